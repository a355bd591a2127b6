"""Commands on versions: ``deploy``, ``versions``, ``status``, ``stop``, ``start``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from dockyard_cli.deploying import (
    Deployed,
    DeployRequest,
    OptionError,
    deploy,
    endpoint_urls,
    missing_endpoint_definitions,
    parse_file_options,
    parse_replicas_options,
    start,
)
from dockyard_cli.events import mebibytes
from dockyard_cli.scope import Scope

__all__ = [
    "deploy_command",
    "notes_lines",
    "start_command",
    "status_command",
    "stop_command",
    "versions_command",
]


def _scope(scope: Scope | None) -> Scope:
    assert scope is not None  # noqa: S101 - session(scoped=True) always gives one
    return scope


def deploy_command(
    folder: Annotated[
        Path,
        typer.Argument(
            help="The code: a folder with a valohai.yaml.", exists=True, file_okay=False
        ),
    ] = Path("."),
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    name: Annotated[str | None, typer.Option(help="Version name (default YYYYMMDD.N).")] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option("--endpoint", "-e", help="Only these endpoints of valohai.yaml."),
    ] = None,
    file: Annotated[
        list[str] | None,
        typer.Option(
            "--file",
            "-f",
            help="ENDPOINT.NAME=PATH: a file the endpoint declares (PATH from here or FOLDER).",
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Targets of a new deployment (default: every one)."),
    ] = None,
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas",
            help="ENDPOINT=MIN:MAX[:TARGET]: replicas per target; MIN < MAX autoscales on "
            "requests in flight per replica (TARGET, default 4); MIN 0 scales to zero.",
        ),
    ] = None,
    idle: Annotated[
        list[str] | None,
        typer.Option(
            "--idle", help="ENDPOINT=SECONDS: with MIN 0, idle this long before going to zero."
        ),
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="Point this alias at the version once ready (implies --wait)."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the build and rollout until ready.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 600.0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Pack the code, upload what the server lacks, and submit it as a new version."""
    missing = missing_endpoint_definitions(folder)
    if missing is not None:  # said before anything is created or uploaded
        raise typer.BadParameter(missing, param_hint="FOLDER")
    try:
        files = parse_file_options(file or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--file") from None
    try:
        counts = parse_replicas_options(replicas or [], idle or [])
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    for named in files.values():
        for file_name, path in named.items():
            # Relative to where the user stands, else to the code folder (its model file).
            if not path.is_file() and not path.is_absolute() and (folder / path).is_file():
                named[file_name] = path = folder / path
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file", param_hint="--file")
    with session(project, deployment) as (client, scope):
        request = DeployRequest(
            folder=folder,
            scope=_scope(scope),
            name=name,
            endpoints=endpoint or [],
            files=files,
            replicas=counts,
            targets=target or [],
            wait=wait,
            alias=alias,
            timeout_s=timeout,
        )
        outcome = deploy(client, request, say)
    _answer(outcome, output)


def _answer(outcome: Deployed, output: Output) -> None:
    """What ``deploy`` and ``start`` print: the version's status, error and URLs; exit 1
    when it did not end where it should."""
    version = outcome.version
    lines = [f"version {version['name']}: {version['status']}"]
    if version.get("error"):
        lines.append(f"error: {version['error']}")
    lines += notes_lines(version)
    lines += [f"{name:<24} {url}" for name, url in outcome.urls.items()]
    emit(
        output,
        {
            "version": version["name"],
            "status": version["status"],
            "urls": outcome.urls,
            "uploaded": outcome.uploaded,
            "error": version.get("error"),
            "warnings": version.get("warnings") or [],
        },
        "\n".join(lines),
    )
    if not outcome.ok:
        raise typer.Exit(1)


def versions_command(
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The deployment's versions, newest first, and which aliases point at each."""
    with session(project, deployment) as (client, scope):
        path = _scope(scope).deployment_path
        versions = client.items(f"{path}/versions")
        aliases = client.items(f"{path}/aliases")
    rows = []
    for version in versions:
        users = [a["name"] for a in aliases if version["name"] in _alias_versions(a)]
        rows.append(
            {
                "version": version["name"],
                "status": version["status"],
                "endpoints": ",".join(e["name"] for e in version["endpoints"]),
                "targets": ",".join(version["targets"]),
                "aliases": ",".join(users),
                "created": str(version["created_at"])[:19],
            }
        )
    emit(
        output,
        versions,
        table(rows, ["version", "status", "endpoints", "targets", "aliases", "created"]),
    )


def notes_lines(version: dict[str, Any]) -> list[str]:
    """What a person should know of a version, a line each: the submission's warnings, the
    build's notes, and each target's notes on each endpoint (the Python it runs on, where
    it listens, the fields it did not honour). Pure."""
    lines = [f"warning: {warning}" for warning in version.get("warnings") or []]
    lines += [f"note: {note}" for note in (version.get("image") or {}).get("notes") or []]
    for state in version.get("endpoint_states") or []:
        place = f"{state['endpoint']} on {state['target']}"
        lines += [f"note: {place}: {note}" for note in state.get("notes") or []]
    return lines


def _alias_versions(alias: dict[str, Any]) -> set[str]:
    targets = [alias["target"], *(alias.get("regions") or {}).values()]
    names: set[str] = set()
    for target in targets:
        if target.get("version"):
            names.add(target["version"])
        names.update(n for n, w in (target.get("weights") or {}).items() if w > 0)
    return names


def status_command(
    version: Annotated[str, typer.Argument(help="Version name.")],
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Where a version stands: overall, its image, and each endpoint on each target."""
    with session(project, deployment) as (client, scope):
        found = client.get(f"{_scope(scope).deployment_path}/versions/{version}")
        urls = endpoint_urls(client.login.router_url, _scope(scope), found, None)
    lines = [f"version {found['name']}: {found['status']}"]
    if found.get("error"):
        lines.append(f"error: {found['error']}")
    lines += notes_lines(found)
    image = found.get("image")
    if image:
        size = sum(layer["size"] for layer in image["layers"])
        lines.append(
            f"image {image['digest'][:19]}… {len(image['layers'])} layers, {mebibytes(size)}"
        )
    states = found.get("endpoint_states") or []
    if states:
        rows = [
            {
                "endpoint": s["endpoint"],
                "target": s["target"],
                "region": s["region"],
                "state": s["state"],
                "replicas": len(s.get("upstreams") or []),
                "desired": _desired_text(s),
                "reason": s.get("reason"),
            }
            for s in states
        ]
        columns = ["endpoint", "target", "region", "state", "replicas", "desired", "reason"]
        lines.append(table(rows, columns))
    lines += [f"{name:<24} {url}" for name, url in urls.items()]
    emit(output, found, "\n".join(lines))


def _desired_text(state: dict[str, Any]) -> str:
    """What the autoscaler wants of an endpoint state, and why: ``4 (load)``; empty for a
    fixed count."""
    desired = state.get("desired_replicas")
    if desired is None:
        return ""
    because = state.get("scaled_because")
    return f"{desired} ({because})" if because else str(desired)


def stop_command(
    version: Annotated[str, typer.Argument(help="Version name.")],
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    force: Annotated[bool, typer.Option(help="Stop it even if an alias points to it.")] = False,
) -> None:
    """Stop a version on every target (refused while an alias points to it)."""
    with session(project, deployment) as (client, scope):
        params = {"force": "true"} if force else {}
        stopped = client.call(
            "DELETE", f"{_scope(scope).deployment_path}/versions/{version}", params=params
        ).json()
    if stopped.get("status") not in ("stopping", "stopped"):
        raise fail(f"version {version} is {stopped.get('status')}, not stopping")
    print(f"version {version}: {stopped['status']}")


def start_command(
    version: Annotated[str, typer.Argument(help="Version name.")],
    wait: Annotated[bool, typer.Option(help="Follow the rollout until ready.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 600.0,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Run a stopped version again on every target (from its built image); an alias can
    then point at it."""
    with session(project, deployment) as (client, scope):
        outcome = start(client, _scope(scope), version, wait=wait, timeout_s=timeout, say=say)
    _answer(outcome, output)
