"""``dockyard alias``: point an alias at a version, split it for a canary, roll it back."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard_cli.console import (
    DeploymentOption,
    Output,
    OutputOption,
    ProjectOption,
    emit,
    fail,
    say,
    session,
    table,
)
from dockyard_cli.events import alias_target_text
from dockyard_cli.scope import Scope

if TYPE_CHECKING:
    import httpx

__all__ = ["alias_app", "alias_body", "switched_text"]

alias_app = typer.Typer(
    help="Aliases (staging, production): switch, canary, roll back.", no_args_is_help=True
)


def alias_body(
    current: dict[str, Any] | None, version: str, weight: int | None, region: str | None
) -> dict[str, Any]:
    """The ``PUT .../aliases/{alias}`` body for ``alias set``. Pure.

    ``weight`` sends that share to ``version`` and the rest to the single version the alias
    points at now (a canary). ``region`` changes only that region's override and keeps the
    rest; without it the alias points wholly at the new target (overrides cleared).
    """
    target: dict[str, Any] = {"version": version}
    if weight is not None and weight < 100:
        if current is None:
            raise ValueError("a canary needs the alias to point at a version first")
        base = (
            current["target"]
            if region is None
            else current["regions"].get(region, current["target"])
        )
        stable = base.get("version")
        if not stable:
            raise ValueError(
                f"the alias is split ({alias_target_text(base)}); set it to one version first"
            )
        if stable == version:
            raise ValueError(f"the alias points at {version} already")
        target = {"weights": {stable: 100 - weight, version: weight}}
    if region is None:
        return target
    if current is None:
        raise ValueError(
            "a regional override needs the alias to exist; set it without --region first"
        )
    main = {k: v for k, v in current["target"].items() if v is not None}
    return {**main, "regions": {**current.get("regions", {}), region: target}}


def switched_text(alias: dict[str, Any], headers: dict[str, str], round_trip_s: float) -> str:
    """Where the alias points now and how fast that went live. Pure.

    The time is the switch's whole round trip, from sending it to its answer: the API
    answers only once every live router process serves the change (the routers it waited
    for are counted in ``X-Dockyard-Routers``), so that is when calls got the new version."""
    text = f"{alias['name']} → {alias_target_text(alias['target'])}"
    for region, target in sorted((alias.get("regions") or {}).items()):
        text += f"; {region}: {alias_target_text(target)}"
    routers = headers.get("x-dockyard-routers")
    if routers:
        lagging = " (some lag: see the warning)" if headers.get("x-dockyard-lagging") else ""
        text += (
            f"  (answered {round_trip_s * 1000:.1f} ms after it was sent, once {routers} "
            f"router processes served it{lagging})"
        )
    return text


def _switched(
    response: httpx.Response, alias: dict[str, Any], output: Output, round_trip_s: float
) -> None:
    lagging = response.headers.get("X-Dockyard-Lagging")
    if lagging:
        say(f"warning: stored, but these router processes had not applied it yet: {lagging}")
    headers = {k.lower(): v for k, v in response.headers.items()}
    emit(output, alias, switched_text(alias, headers, round_trip_s))


def _path(scope: Scope | None, alias: str) -> str:
    assert scope is not None  # noqa: S101 - scoped sessions always have one
    return f"{scope.deployment_path}/aliases/{alias}"


@alias_app.command("set")
def set_alias(
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    version: Annotated[str, typer.Argument(help="The version it should serve.")],
    weight: Annotated[
        int | None,
        typer.Option(
            min=0, max=100, help="Send only this % to VERSION, the rest to the current one."
        ),
    ] = None,
    region: Annotated[str | None, typer.Option(help="Change only this region's override.")] = None,
    force: Annotated[
        bool,
        typer.Option(help="Point at a version still on its way to ready (never a stopped one)."),
    ] = False,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Point ALIAS at VERSION, or split it between its current version and VERSION."""
    with session(project, deployment) as (client, scope):
        path = _path(scope, alias)
        found = client.call("GET", path, expect=(404,))
        current = found.json() if found.status_code == 200 else None
        try:
            body = alias_body(current, version, weight, region)
        except ValueError as exc:  # refused for where the alias points now: not a usage error
            raise fail(str(exc), 1) from None
        if force:
            body["force"] = True
        sent = time.perf_counter()
        response = client.call("PUT", path, json=body)
        took = time.perf_counter() - sent
    _switched(response, response.json(), output, took)


@alias_app.command("rollback")
def rollback(
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    force: Annotated[
        bool,
        typer.Option(
            help="Roll back to a version still on its way to ready (never a stopped one)."
        ),
    ] = False,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Point ALIAS back where it pointed before its current target."""
    with session(project, deployment) as (client, scope):
        params = {"force": "true"} if force else {}
        sent = time.perf_counter()
        response = client.call("POST", f"{_path(scope, alias)}/rollback", params=params)
        took = time.perf_counter() - sent
    _switched(response, response.json(), output, took)


@alias_app.command("history")
def history(
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Every change of ALIAS, newest first."""
    with session(project, deployment) as (client, scope):
        changes = client.items(f"{_path(scope, alias)}/history")
    rows = [
        {
            "at": str(c["at"])[:19],
            "action": c["action"],
            "target": alias_target_text(c["target"]),
            "regions": "; ".join(
                f"{r}: {alias_target_text(t)}" for r, t in sorted(c["regions"].items())
            ),
            "by": c["by"],
        }
        for c in changes
    ]
    emit(output, changes, table(rows, ["at", "action", "target", "regions", "by"]))


@alias_app.command("list")
def list_aliases(
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The deployment's aliases and where each points."""
    with session(project, deployment) as (client, scope):
        assert scope is not None  # noqa: S101 - scoped
        aliases = client.items(f"{scope.deployment_path}/aliases")
    rows = [
        {
            "alias": a["name"],
            "target": alias_target_text(a["target"]),
            "regions": "; ".join(
                f"{r}: {alias_target_text(t)}" for r, t in sorted(a["regions"].items())
            ),
            "updated": str(a["updated_at"])[:19],
        }
        for a in aliases
    ]
    emit(output, aliases, table(rows, ["alias", "target", "regions", "updated"]))
