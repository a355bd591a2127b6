"""``dockyard owners``: create an owner (platform admin) and issue its API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard_cli.console import Output, OutputOption, emit, session, table

__all__ = ["owners_app"]

owners_app = typer.Typer(
    help="Owners (users, organisations) and their API tokens.", no_args_is_help=True
)


@owners_app.command("create")
def create_owner(
    name: Annotated[str, typer.Argument(help="Owner name, a DNS label.")],
    exist_ok: Annotated[bool, typer.Option(help="Succeed if it exists already.")] = False,
) -> None:
    """Create an owner (platform admin token)."""
    with session(scoped=False) as (client, _):
        response = client.call(
            "POST", "/v1/owners", json={"name": name}, expect=(409,) if exist_ok else ()
        )
    print(f"owner {name}: {'exists' if response.status_code == 409 else 'created'}")


@owners_app.command("token")
def create_token(
    owner: Annotated[str, typer.Argument(help="Owner name.")],
    role: Annotated[
        str, typer.Option(help="viewer, deployer or admin (of the owner).")
    ] = "deployer",
    description: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Issue an API token for OWNER; its secret is shown this once."""
    with session(scoped=False) as (client, _):
        created = client.post(
            f"/v1/owners/{owner}/tokens", {"role": role, "description": description}
        )
    emit(output, created, table([created], ["id", "owner", "role", "token"]))
