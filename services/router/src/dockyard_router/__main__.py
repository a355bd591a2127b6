"""``python -m dockyard_router``: serve model endpoints by version."""

from __future__ import annotations

import asyncio

from dockyard_common import run_until_signalled
from dockyard_router.app import serve
from dockyard_router.settings import RouterSettings


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = RouterSettings()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
