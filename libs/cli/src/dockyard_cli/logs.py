"""``dockyard logs``: the last lines of each replica of an endpoint, per target; ``--follow`` polls.

The API answers ``{"targets": [{"target", "region", "replicas": [{"replica", "lines",
"name", "error"}], "error"}]}``; a target, or one replica, that could not be read carries an
``error`` instead of lines.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dockyard_cli.console import (
    DeploymentOption,
    Output,
    OutputOption,
    ProjectOption,
    emit,
    session,
)
from dockyard_cli.scope import Scope

__all__ = ["logs_command", "new_lines", "render_logs"]

Seen = dict[tuple[str, int], list[str]]


def new_lines(before: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` that follow what ``before`` already showed. Pure.

    Both are tails of one growing log: the longest end of ``before`` that starts ``now``
    is the overlap; with none (the log moved on by more than a tail), everything is new.
    """
    for start in range(max(0, len(before) - len(now)), len(before)):
        overlap = before[start:]
        if now[: len(overlap)] == overlap:
            return now[len(overlap) :]
    return now


def render_logs(answer: dict[str, Any], seen: Seen | None = None) -> list[str]:
    """Lines for a person, each prefixed ``target/replica |``; with ``seen`` only new ones
    (and ``seen`` updated). Pure but for ``seen``."""
    out: list[str] = []
    for target in answer.get("targets", []):
        name = target.get("target", "?")
        if target.get("error"):
            out.append(f"{name} ({target.get('region')}) | cannot read logs: {target['error']}")
            continue
        for replica in target.get("replicas", []):
            key = (name, int(replica.get("replica", 0)))
            if replica.get("error"):  # this replica only (a pod still starting, say)
                said = [f"cannot read logs: {replica['error']}"]
                if seen is None or seen.get(key) != said:
                    out.append(f"{name}/{key[1]} | {said[0]}")
                if seen is not None:
                    seen[key] = said
                continue
            lines = [str(line) for line in replica.get("lines", [])]
            shown = lines if seen is None else new_lines(seen.get(key, []), lines)
            if seen is not None:
                seen[key] = lines
            out += [f"{name}/{key[1]} | {line}" for line in shown]
            if seen is None and not lines:
                # A replica that has written nothing yet is not a broken command.
                out.append(f"{name}/{key[1]} | (no output yet)")
    return out


def logs_command(
    version: Annotated[str, typer.Argument(help="Version name.")],
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    tail: Annotated[int, typer.Option(min=1, max=10_000, help="Lines per replica.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 1.0,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The last lines each replica of ENDPOINT of VERSION wrote, per target."""
    with session(project, deployment) as (client, scope):
        assert isinstance(scope, Scope)  # noqa: S101 - scoped session
        path = f"{scope.deployment_path}/versions/{version}/endpoints/{endpoint}/logs"
        params: dict[str, Any] = {"tail": tail, **({"target": target} if target else {})}
        answer = client.get(path, params=params)
        if not follow:
            emit(output, answer, "\n".join(render_logs(answer)))
            return
        seen: Seen = {}
        while True:
            for line in render_logs(answer, seen):
                print(line, flush=True)
            time.sleep(interval)
            answer = client.get(path, params=params)
