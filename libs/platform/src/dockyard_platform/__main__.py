"""``dockyard-platform`` (``python -m dockyard_platform``): run the embedded platform in the
foreground until Ctrl-C. ``dockyard up`` runs this too."""

from __future__ import annotations

import argparse

from dockyard_platform.embedded import EmbeddedSettings, run_embedded


def main(argv: list[str] | None = None) -> None:
    """Console entry point: settings come from the environment (``DOCKYARD_*``)."""
    argparse.ArgumentParser(
        prog="dockyard-platform",
        description=(
            "Run Dockyard's embedded platform (NATS, Redis, the four services, two local "
            "targets) until Ctrl-C. Settings are DOCKYARD_* environment variables: see "
            "docs/configuration.md."
        ),
    ).parse_args(argv)
    raise SystemExit(run_embedded(EmbeddedSettings()))


if __name__ == "__main__":
    main()
