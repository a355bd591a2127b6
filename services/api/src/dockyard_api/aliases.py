"""Alias decisions: which changes are allowed, what a change or a rollback produces. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard_common.errors import InvalidInput
from dockyard_common.models import Alias, AliasChange, AliasTarget, Version, VersionStatus, utcnow

__all__ = [
    "HISTORY_LIMIT",
    "NothingToRollBack",
    "alias_after_rollback",
    "alias_after_set",
    "alias_pointed_back",
    "stopped_versions",
    "unready_versions",
]

HISTORY_LIMIT = 20
"""Changes kept per alias; older ones are dropped. Every router process and event consumer
reads the whole alias on each switch, so the record stays small; each change is also an
alias.changed event, kept for the event stream's seven days."""


class NothingToRollBack(InvalidInput):
    """The alias has never pointed anywhere else."""


def unready_versions(
    targets: list[AliasTarget], versions: Mapping[str, Version | None]
) -> dict[str, str]:
    """Versions the targets name that cannot take traffic: name → why (missing or status)."""
    problems: dict[str, str] = {}
    for target in targets:
        for name in target.versions:
            version = versions.get(name)
            if version is None:
                problems[name] = "does not exist"
            elif version.status is not VersionStatus.READY:
                problems[name] = f"is {version.status.value}"
    return problems


_STOPPED = (VersionStatus.STOPPING, VersionStatus.STOPPED)


def stopped_versions(
    targets: list[AliasTarget], versions: Mapping[str, Version | None]
) -> list[str]:
    """The versions the targets name that are stopped or stopping, sorted. An alias never
    points at one, forced or not: it would answer 404 until the version is started again."""
    return sorted(
        {
            name
            for target in targets
            for name in target.versions
            if (version := versions.get(name)) is not None and version.status in _STOPPED
        }
    )


def _with_change(alias: Alias, change: AliasChange) -> Alias:
    history = [*alias.history, change][-HISTORY_LIMIT:]
    return alias.model_copy(
        update={
            "target": change.target,
            "regions": change.regions,
            "history": history,
            "updated_at": change.at,
        }
    )


def alias_after_set(
    current: Alias | None,
    *,
    owner: str,
    project: str,
    deployment: str,
    name: str,
    target: AliasTarget,
    regions: dict[str, AliasTarget],
    by: str,
) -> Alias:
    """The alias once pointed at ``target`` (with region overrides), the change recorded."""
    change = AliasChange(target=target, regions=regions, action="set", by=by, at=utcnow())
    if current is None:
        current = Alias(
            owner=owner,
            project=project,
            deployment=deployment,
            name=name,
            target=target,
            regions=regions,
        )
    return _with_change(current, change)


def alias_pointed_back(alias: Alias, before: Alias, by: str) -> Alias:
    """The alias pointed where ``before`` pointed, recorded as a rollback by ``by`` (the
    platform undoing a switch whose version stopped while it was made)."""
    change = AliasChange(
        target=before.target, regions=before.regions, action="rollback", by=by, at=utcnow()
    )
    return _with_change(alias, change)


def alias_after_rollback(alias: Alias, by: str) -> Alias:
    """The alias pointed back where it pointed before its current target.

    Walks the history back to the latest entry that differs from the current pointing;
    rolling back twice returns to where the first rollback started (like ``rollout undo``).
    """
    current = (alias.target, alias.regions)
    for change in reversed(alias.history):
        if (change.target, change.regions) != current:
            entry = AliasChange(
                target=change.target, regions=change.regions, action="rollback", by=by, at=utcnow()
            )
            return _with_change(alias, entry)
    raise NothingToRollBack(f"alias {alias.name!r} has never pointed anywhere else")
