"""``python -m dockyard_scheduler``: run every built version on its targets."""

from __future__ import annotations

import asyncio

from dockyard_common import (
    configure_logging,
    connect_nats,
    get_logger,
    provision_jetstream,
    run_until_signalled,
)
from dockyard_scheduler.reconcile import Scheduler
from dockyard_scheduler.settings import SchedulerSettings

log = get_logger(__name__)


async def serve(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    """Reconcile until ``stop`` is set, then stop every workload this process started."""
    nc = await connect_nats(settings.nats_url, name="dockyard-scheduler")
    try:
        js = nc.jetstream()
        await provision_jetstream(js)
        async with asyncio.TaskGroup() as tasks:
            scheduler = tasks.create_task(Scheduler(js, settings).run())
            log.info("scheduler.started", runtime=str(settings.runtime_dir))
            await stop.wait()
            scheduler.cancel()
    finally:
        await nc.drain()


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = SchedulerSettings()
    configure_logging(service="scheduler", log_format=settings.log_format, level=settings.log_level)
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
