"""``dockyard predict``: call an endpoint through the router and say who answered."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard_cli.console import (
    DeploymentOption,
    Output,
    OutputOption,
    ProjectOption,
    emit,
    fail,
    failures_exit,
    say,
    table,
)
from dockyard_cli.errors import ApiError
from dockyard_cli.scope import Scope

if TYPE_CHECKING:
    import httpx

__all__ = ["call_path", "predict_command", "request_body", "served_line"]


def call_path(spec: str, scope: Scope) -> str:
    """The router path for ``ALIAS/ENDPOINT[/PATH]`` (or ``VERSION/...``). Pure."""
    name, _, rest = spec.strip("/").partition("/")
    endpoint, _, tail = rest.partition("/")
    if not name or not endpoint:
        raise ValueError(f"{spec!r}: write ALIAS/ENDPOINT (e.g. production/predict) or a URL")
    return scope.route(name, endpoint) + tail


def request_body(value: str | None) -> bytes | None:
    """``--json`` as bytes: inline JSON, or ``@FILE``; ValueError when it is not JSON."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--json is not JSON: {exc}") from None
    return text.encode()


def _served(response: httpx.Response) -> dict[str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return {
        "status": response.status_code,
        "version": response.headers.get("X-Dockyard-Version"),
        "region": response.headers.get("X-Dockyard-Region"),
        "alias": response.headers.get("X-Dockyard-Alias"),
        "body": body,
    }


def served_line(served: dict[str, Any]) -> str:
    """Who answered a call, for a person. Pure.

    Without a version header the router itself answered: nothing serves that path, and its
    problem document says which part it does not know (deployment, version or alias,
    endpoint) or that the version is stopped.
    """
    if served["version"] is None:
        body = served["body"]
        detail = body.get("detail") if isinstance(body, dict) else None
        return f"HTTP {served['status']} from the router: " + (
            str(detail)
            if detail
            else "nothing serves this path (check the version or alias, and --deployment)"
        )
    return (
        f"served by version {served['version']} in region {served['region']}"
        + (f" (alias {served['alias']})" if served["alias"] else "")
        + ("" if served["status"] < 400 else f"; HTTP {served['status']}")
    )


def predict_command(
    target: Annotated[
        str, typer.Argument(help="ALIAS/ENDPOINT or VERSION/ENDPOINT (then any path), or a URL.")
    ],
    json_body: Annotated[
        str | None, typer.Option("--json", "-j", help="The request body: JSON, or @FILE.")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Prefer this region.")] = None,
    client_key: Annotated[
        str | None, typer.Option(help="A sticky client key: the same key, the same canary side.")
    ] = None,
    repeat: Annotated[
        int, typer.Option(min=1, max=100_000, help="Call this many times and count who answered.")
    ] = 1,
    as_clients: Annotated[
        str | None,
        typer.Option(
            help="With --repeat: call i sends the client key PREFIX-i (distinct clients)."
        ),
    ] = None,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Call an endpoint and print its answer with the version and region that served it."""
    try:
        body = request_body(json_body)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--json") from None
    import httpx

    from dockyard_cli.config import load_login

    with failures_exit():
        if target.startswith(("http://", "https://")):
            url = target
        else:
            login = load_login(project=project, deployment=deployment)
            if not login.router_url:
                raise fail(
                    "no router URL: dockyard login --router-url <URL>, or DOCKYARD_ROUTER_URL", 2
                )
            try:
                url = login.router_url.rstrip("/") + call_path(
                    target, Scope(login.project, login.deployment)
                )
            except ValueError as exc:
                raise fail(str(exc), 2) from None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if region:
            headers["X-Dockyard-Region"] = region
        if client_key:
            headers["X-Dockyard-Client-Key"] = client_key
        method = "POST" if body is not None else "GET"
        results = []
        with httpx.Client(timeout=60.0) as http:
            for i in range(repeat):
                if as_clients:
                    headers["X-Dockyard-Client-Key"] = f"{as_clients}-{i}"
                try:
                    response = http.request(method, url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise ApiError(f"cannot reach {url}: {exc}") from exc
                results.append(_served(response))
    failures = [r for r in results if r["status"] >= 400]
    if repeat == 1:
        served = results[0]
        emit(
            output,
            served,
            json.dumps(served["body"]) if not isinstance(served["body"], str) else served["body"],
        )
        if output is Output.TABLE:
            say(served_line(served))
    else:
        versions = Counter(str(r["version"]) for r in results)
        regions = Counter(str(r["region"]) for r in results)
        summary = {
            "calls": repeat,
            "failures": len(failures),
            "versions": dict(versions),
            "regions": dict(regions),
        }
        rows = [
            {"version": v, "calls": n, "share": f"{100 * n / repeat:.1f}%"}
            for v, n in sorted(versions.items())
        ]
        emit(
            output,
            summary,
            table(rows, ["version", "calls", "share"]) + f"\nfailures: {len(failures)}",
        )
    if failures:
        raise typer.Exit(1)
