"""``python -m dockyard_router``: serve model endpoints by version."""

from __future__ import annotations

from dockyard_common import run_until_signalled
from dockyard_router.app import serve
from dockyard_router.settings import RouterSettings


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = RouterSettings()
    run_until_signalled(lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
