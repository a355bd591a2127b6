"""Reading the API's live event feed (Server-Sent Events) and saying each event in one line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from dockyard_cli.console import (
    DeploymentOption,
    Output,
    OutputOption,
    ProjectOption,
    failures_exit,
    session,
)

__all__ = ["FeedEvent", "alias_target_text", "describe", "events_command", "mebibytes", "read_feed"]


@dataclass(frozen=True)
class FeedEvent:
    """One frame of the feed: its id (to resume from), its type and the CloudEvent."""

    id: int
    type: str
    envelope: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """The resource the event carries."""
        data = self.envelope.get("data")
        return data if isinstance(data, dict) else {}


def read_feed(lines: Iterable[str]) -> Iterator[FeedEvent]:
    """The events in the lines of a ``text/event-stream`` (comments and keep-alives skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if line == "":
            if "data" in fields:
                yield FeedEvent(
                    int(fields.get("id", "0")), fields.get("event", ""), json.loads(fields["data"])
                )
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


def mebibytes(size: int) -> str:
    """A byte count for people."""
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.1f} KiB"


def alias_target_text(target: dict[str, Any]) -> str:
    """``v2`` or ``v1 90% / v2 10%``."""
    if target.get("version"):
        return str(target["version"])
    weights = target.get("weights") or {}
    return " / ".join(f"{name} {weight}%" for name, weight in sorted(weights.items()))


def _image_text(version: dict[str, Any]) -> str:
    image = version.get("image") or {}
    layers = image.get("layers") or []
    size = sum(int(layer.get("size", 0)) for layer in layers)
    seconds = image.get("build_seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    return f"{len(layers)} layers, {mebibytes(size)}{took}"


def describe(event: FeedEvent) -> str:
    """One line for a person: when, what, which resource and what it says. Pure."""
    data = event.data
    when = str(event.envelope.get("time", ""))[11:23]
    scope = "/".join(str(data.get(k, "?")) for k in ("owner", "project", "deployment"))
    kind = event.type
    if kind.startswith("version."):
        text = f"{scope}/{data.get('name')} {data.get('status')}"
        if kind == "version.built":
            text += f" ({_image_text(data)})"
        if data.get("error"):
            text += f": {data['error']}"
    elif kind.startswith("endpoint."):
        text = (
            f"{scope}/{data.get('version')}/{data.get('endpoint')} on {data.get('target')} "
            f"({data.get('region')}) {data.get('state')}"
        )
        if data.get("upstreams"):
            text += f", {len(data['upstreams'])} replica(s)"
        if data.get("desired_replicas") is not None:
            text += f", {data['desired_replicas']} wanted ({data.get('scaled_because') or '?'})"
        if data.get("reason"):
            text += f": {data['reason']}"
    elif kind == "alias.changed":
        text = f"{scope} alias {data.get('name')} → {alias_target_text(data.get('target') or {})}"
        for region, target in sorted((data.get("regions") or {}).items()):
            text += f", {region}: {alias_target_text(target)}"
    elif kind == "deployment.changed":
        text = f"{scope} targets {', '.join(data.get('targets') or [])}"
    else:
        text = scope
    return f"{when} #{event.id} {kind:<22} {text}"


def events_command(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events as they happen.")
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(min=0, help="Start after this event id (default: all, or new with --follow)."),
    ] = None,
    types: Annotated[
        str | None, typer.Option(help="Comma-separated types, wildcards: version.*")
    ] = None,
    idle: Annotated[
        float, typer.Option(help="Without --follow: stop after this many quiet seconds.")
    ] = 1.0,
    project: ProjectOption = None,
    deployment: DeploymentOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The event feed, one line per event (with -o json, one CloudEvent per line)."""
    import httpx

    with session(project, deployment, scoped=False) as (client, _):
        login = client.login
        params: dict[str, str | int] = {}
        if login.project:
            params["owner"], params["project"] = login.project.split("/", 1)
            if login.deployment:
                params["deployment"] = login.deployment
        if types:
            params["types"] = types
        start = since if since is not None else (None if follow else 0)
        if start is not None:
            params["since"] = start
        with (
            failures_exit(),
            client.stream("/v1/events", idle_s=None if follow else idle, **params) as feed,
        ):
            try:
                for event in read_feed(feed.iter_lines()):
                    if output is Output.JSON:
                        print(json.dumps({"id": event.id, **event.envelope}), flush=True)
                    else:
                        print(describe(event), flush=True)
            except httpx.ReadTimeout:
                return  # quiet for ``idle`` seconds: everything stored so far is printed
