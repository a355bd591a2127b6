"""``python -m dockyard_builder``: build every created version into an OCI image."""

from __future__ import annotations

from dockyard_builder.service import Builder
from dockyard_builder.settings import BuilderSettings
from dockyard_common.runtime import run_jetstream_service


def main() -> None:
    """Read settings from the environment and build until SIGTERM."""
    settings = BuilderSettings()
    run_jetstream_service("builder", settings, lambda nc: Builder(nc.jetstream(), settings).run())


if __name__ == "__main__":
    main()
