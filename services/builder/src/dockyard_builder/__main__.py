"""``python -m dockyard_builder``: build every created version into an OCI image."""

from __future__ import annotations

import asyncio

from dockyard_builder.service import Builder
from dockyard_builder.settings import BuilderSettings
from dockyard_common import (
    configure_logging,
    connect_nats,
    get_logger,
    provision_jetstream,
    run_until_signalled,
)

log = get_logger(__name__)


async def serve(settings: BuilderSettings, stop: asyncio.Event) -> None:
    """Run the build consumer until ``stop`` is set."""
    nc = await connect_nats(settings.nats_url, name="dockyard-builder")
    try:
        js = nc.jetstream()
        await provision_jetstream(js)
        async with asyncio.TaskGroup() as tasks:
            consumer = tasks.create_task(Builder(js, settings).run())
            log.info("builder.started", images=str(settings.images_dir))
            await stop.wait()
            consumer.cancel()
    finally:
        await nc.drain()


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = BuilderSettings()
    configure_logging(service="builder", log_format=settings.log_format, level=settings.log_level)
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
