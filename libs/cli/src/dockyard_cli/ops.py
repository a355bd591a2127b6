"""Operations: ``dockyard targets`` and ``dockyard regions drain|undrain`` (the API: a drain is
state of record), ``dockyard regions list`` (what the router sees: its ops API)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard_cli.console import Output, OutputOption, emit, session, table
from dockyard_cli.errors import ApiError

__all__ = ["regions_app", "targets_command"]

regions_app = typer.Typer(
    help="Regions as the router sees them; drain one to move traffic out (admin token).",
    no_args_is_help=True,
)


def targets_command(output: OutputOption = Output.TABLE) -> None:
    """Every target endpoints can run on, with its region and kind."""
    with session(scoped=False) as (client, _):
        targets = client.items("/v1/targets")
    rows = [
        {
            "target": t["name"],
            "region": t["region"],
            "kind": t["kind"],
            "where": t.get("address") or t.get("context") or "",
            "public_url": t.get("public_url"),
        }
        for t in targets
    ]
    emit(output, targets, table(rows, ["target", "region", "kind", "where", "public_url"]))


def _ops(method: str, path: str) -> Any:
    """One call to the router's ``/_ops`` API as the logged-in (admin) token."""
    import httpx

    from dockyard_cli.client import refusal

    with session(scoped=False) as (client, _), client.router(admin=True) as router:
        try:
            response = router.request(method, path)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the router at {client.login.router_url}: {exc}") from exc
        if not response.is_success:
            raise refusal(response, client.login)
        return response.json()


@regions_app.command("list")
def list_regions(output: OutputOption = Output.TABLE) -> None:
    """Each region with the routes and replicas the router holds for it, and whether drained."""
    regions = _ops("GET", "/_ops/regions")["items"]
    rows = [{**r, "targets": ",".join(r["targets"])} for r in regions]
    emit(
        output,
        regions,
        table(rows, ["region", "routes", "upstreams", "targets", "drained", "local"]),
    )


def _set_drained(region: str, drained: bool) -> dict[str, Any]:
    with session(scoped=False) as (client, _):
        answer: dict[str, Any] = client.put(f"/v1/regions/{region}", {"drained": drained})
    return answer


@regions_app.command("drain")
def drain(region: Annotated[str, typer.Argument(help="Region name, e.g. eu.")]) -> None:
    """Move new traffic out of REGION (in-flight requests finish; serves if no other can)."""
    answer = _set_drained(region, True)
    print(f"region {answer['name']}: drained")


@regions_app.command("undrain")
def undrain(region: Annotated[str, typer.Argument(help="Region name.")]) -> None:
    """Let REGION take traffic again."""
    answer = _set_drained(region, False)
    print(f"region {answer['name']}: serving")
