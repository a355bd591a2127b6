"""``python -m dockyard_scheduler``: run every built version on its targets."""

from __future__ import annotations

from dockyard_common.runtime import run_jetstream_service
from dockyard_scheduler import app
from dockyard_scheduler.settings import SchedulerSettings


def main() -> None:
    """Read settings from the environment and reconcile until SIGTERM.

    Stopping cancels the scheduler, which stops every workload this process started.
    """
    settings = SchedulerSettings()
    run_jetstream_service("scheduler", settings, lambda nc: app.run(nc, settings))


if __name__ == "__main__":
    main()
