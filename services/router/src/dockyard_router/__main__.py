"""``python -m dockyard_router``: serve model endpoints by version."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from dockyard_common import configure_logging
from dockyard_common.runtime import run_until_signalled
from dockyard_router.app import serve
from dockyard_router.settings import RouterSettings
from dockyard_router.workers import supervise


def main() -> None:
    """Read settings from the environment and serve until SIGTERM: in this process, or in
    ``DOCKYARD_ROUTER_WORKERS`` worker processes under it."""
    settings = RouterSettings()
    if settings.router_workers > 1 and settings.router_worker is None:
        configure_logging(
            service="router", log_format=settings.log_format, level=settings.log_level
        )
        sys.exit(asyncio.run(supervise(settings.router_workers, settings.router_listen_fd)))
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    ready = _ready_to(settings.router_ready_fd)
    run_until_signalled(lambda stop: serve(settings, stop, ready))


def _ready_to(fd: int | None) -> Callable[[], None] | None:
    """How a worker tells its parent that it serves: a byte on the pipe the parent gave it."""
    if fd is None:
        return None

    def ready() -> None:
        os.write(fd, b"1")
        os.close(fd)

    return ready


if __name__ == "__main__":
    main()
