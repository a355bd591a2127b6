"""``dockyard``: the command line of the platform."""

from __future__ import annotations

import typer

from dockyard_cli.embedded import EmbeddedSettings, run_embedded

app = typer.Typer(help="Dockyard: ML models behind versioned HTTP endpoints.", no_args_is_help=True)


@app.command()
def up() -> None:
    """Run the embedded platform (NATS, Redis, the four services, two local targets)."""
    raise typer.Exit(run_embedded(EmbeddedSettings()))


@app.callback()
def _root() -> None:
    """Dockyard: ML models behind versioned HTTP endpoints."""


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
