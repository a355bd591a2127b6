"""What the console's pages show, decided from the records: pure functions, no I/O.

The status grid (versions by endpoints by targets), an alias's description, an event's line
in the timeline, a version's build timings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard_common import Alias, AliasTarget, Version

__all__ = [
    "Cell",
    "GridRow",
    "TimelineEntry",
    "build_timings",
    "describe_target",
    "grid",
    "timeline_entry",
]


@dataclass(frozen=True)
class Cell:
    """One endpoint of one version on one target."""

    state: str
    replicas: int
    reason: str | None


@dataclass(frozen=True)
class GridRow:
    """A version's line of the grid: its status and a cell per (endpoint, target) column."""

    version: str
    status: str
    error: str | None
    aliases: list[str]
    cells: list[Cell]


def grid(
    versions: list[Version], aliases: list[Alias]
) -> tuple[list[tuple[str, str]], list[GridRow]]:
    """The columns (endpoint, target) of every version shown, and a row per version (in the
    order given); a version not placed on a column's target shows ``—`` there."""
    columns: list[tuple[str, str]] = []
    for version in versions:
        for spec in version.endpoints:
            for target in version.targets:
                if (spec.name, target) not in columns:
                    columns.append((spec.name, target))
    columns.sort()
    rows = []
    for version in versions:
        states = {(s.endpoint, s.target): s for s in version.endpoint_states}
        names = {spec.name for spec in version.endpoints}
        cells = []
        for endpoint, target in columns:
            if endpoint not in names or target not in version.targets:
                cells.append(Cell(state="—", replicas=0, reason=None))
                continue
            state = states.get((endpoint, target))
            if state is None:
                cells.append(Cell(state="waiting", replicas=0, reason=None))
            else:
                cells.append(
                    Cell(
                        state=state.state.value, replicas=len(state.upstreams), reason=state.reason
                    )
                )
        pointing = sorted(a.name for a in aliases if _names(a, version.name))
        rows.append(
            GridRow(
                version=version.name,
                status=version.status.value,
                error=version.error,
                aliases=pointing,
                cells=cells,
            )
        )
    return columns, rows


def _names(alias: Alias, version: str) -> bool:
    targets = [alias.target, *alias.regions.values()]
    return any(version in target.versions for target in targets)


def describe_target(target: AliasTarget) -> str:
    """``v2``, or ``v1 90% · v2 10%`` for a canary."""
    if target.version is not None:
        return target.version
    weights = target.weights or {}
    return " · ".join(f"{name} {weight}%" for name, weight in sorted(weights.items()))


@dataclass(frozen=True)
class TimelineEntry:
    """One event as the timeline shows it."""

    id: int
    type: str
    time: str
    summary: str


def timeline_entry(sequence: int, event_type: str, event: dict[str, Any]) -> TimelineEntry:
    """The line a CloudEvent gets in a deployment's timeline."""
    data = event.get("data") or {}
    time = str(event.get("time", ""))[:19].replace("T", " ")
    if event_type.startswith("endpoint."):
        summary = (
            f"{data.get('version')} {data.get('endpoint')} on {data.get('target')}: "
            f"{data.get('state')}"
        )
        if data.get("reason"):
            summary += f" ({data['reason']})"
    elif event_type == "version.build.progress":
        done, total = data.get("bytes_done", 0), data.get("bytes_total", 0) or 1
        summary = f"{data.get('version')} {data.get('phase')} {100 * done // total}%"
    elif event_type.startswith("version."):
        summary = f"{data.get('name')}: {data.get('status')}"
        if data.get("error"):
            summary += f" ({data['error']})"
    elif event_type == "alias.changed":
        target = data.get("target") or {}
        where = target.get("version") or ", ".join(
            f"{k} {v}%" for k, v in sorted((target.get("weights") or {}).items())
        )
        summary = f"{data.get('name')} → {where}"
    elif event_type == "deployment.changed":
        summary = f"targets: {', '.join(data.get('targets') or [])}"
    else:
        summary = event_type
    return TimelineEntry(id=sequence, type=event_type, time=time, summary=summary)


_MILESTONES = (
    ("submitted", "version.created"),
    ("build started", "version.build.started"),
    ("built", "version.built"),
    ("ready", "version.ready"),
)


def build_timings(events: list[tuple[str, datetime]]) -> list[tuple[str, str, str]]:
    """(milestone, when, seconds since the previous one) for the milestones reached, from a
    version's events (type, time) oldest first; the last occurrence of each counts."""
    seen: dict[str, datetime] = {}
    for event_type, at in events:
        seen[event_type] = at
    rows = []
    previous: datetime | None = None
    for label, event_type in _MILESTONES:
        reached = seen.get(event_type)
        if reached is None:
            continue
        at = reached
        took = f"{(at - previous).total_seconds():.1f} s" if previous is not None else ""
        rows.append((label, at.isoformat(timespec="seconds").replace("+00:00", "Z"), took))
        previous = at
    return rows
