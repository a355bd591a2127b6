"""``dockyard``: the command line of the platform."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dockyard_cli.accounts import owners_app
from dockyard_cli.aliases import alias_app
from dockyard_cli.calls import predict_command
from dockyard_cli.console import failures_exit
from dockyard_cli.events import events_command
from dockyard_cli.logs import logs_command
from dockyard_cli.ops import regions_app, targets_command
from dockyard_cli.versions import (
    deploy_command,
    start_command,
    status_command,
    stop_command,
    versions_command,
)

app = typer.Typer(
    help="Dockyard: ML models behind versioned HTTP endpoints.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["--help", "-h"]},
    pretty_exceptions_enable=False,
    # Plain help text: rendering it with rich imports rich, markdown-it and pygments, which
    # took longer than everything else `dockyard --help` does.
    rich_markup_mode=None,
)


@app.command()
def up() -> None:
    """Run the embedded platform (NATS, Redis, the four services, two local targets);
    needs the dockyard-platform package beside this command."""
    from dockyard_cli.up import run_up

    raise typer.Exit(run_up())


@app.command()
def login(
    url: Annotated[str, typer.Option(help="The API, e.g. http://127.0.0.1:8080.")],
    token: Annotated[str, typer.Option(help="An API token (dockyard up prints the admin one).")],
    router_url: Annotated[
        str | None, typer.Option(help="The router, e.g. http://127.0.0.1:8081 (for predict, ops).")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Default OWNER/PROJECT.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Default deployment.")] = None,
    check: Annotated[bool, typer.Option(help="Check the token against the API first.")] = True,
) -> None:
    """Remember the API, a token, the router and default scopes (file mode 0600)."""
    if project is not None and project.count("/") != 1:
        raise typer.BadParameter("write it as OWNER/PROJECT", param_hint="--project")
    from dockyard_cli.client import ApiClient
    from dockyard_cli.config import Login, save_login

    stored = Login.model_validate(
        {
            "url": url,
            "token": token,
            "router_url": router_url,
            "project": project,
            "deployment": deployment,
        }
    )
    if check:
        with failures_exit(), ApiClient(stored) as client:
            client.get("/v1/targets")
    path = save_login(stored)
    print(f"logged in to {url}; saved in {path}")


app.command("deploy")(deploy_command)
app.command("versions")(versions_command)
app.command("status")(status_command)
app.command("stop")(stop_command)
app.command("start")(start_command)
app.command("logs")(logs_command)
app.command("predict")(predict_command)
app.command("events")(events_command)
app.command("targets")(targets_command)
app.add_typer(alias_app, name="alias")
app.add_typer(owners_app, name="owners")
app.add_typer(regions_app, name="regions")


@app.callback()
def _root() -> None:
    """Dockyard: ML models behind versioned HTTP endpoints."""


def main() -> None:
    """Console entry point."""
    # Importing httpx imports its own command line (httpx._main), and that imports click,
    # rich and pygments: a fifth of a second of every command that calls the API, for code
    # nothing here runs. A None entry makes that import fail; httpx then goes without it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    app()


if __name__ == "__main__":
    main()
