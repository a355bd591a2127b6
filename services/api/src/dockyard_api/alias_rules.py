"""The alias rules: which versions an alias may point at, what a change or a rollback
produces, which versions a switch holds. Pure; the switch itself is
:mod:`dockyard_api.switching`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dockyard_common.errors import InvalidInput
from dockyard_common.models import Alias, AliasChange, AliasTarget, Version, VersionStatus, utcnow

__all__ = [
    "HISTORY_LIMIT",
    "WAS_STOPPED",
    "NothingToRollBack",
    "Refusal",
    "alias_after_rollback",
    "alias_after_set",
    "alias_pointed_back",
    "held_statuses",
    "refusal",
    "stopped_versions",
    "unready_versions",
    "why_not_held",
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


@dataclass(frozen=True)
class Refusal:
    """Why an alias may not point at the versions a change names."""

    kind: Literal["missing", "stopped", "not-ready"]
    """``missing``: a version does not exist; ``stopped``: one is stopped or stopping (never
    allowed, forced or not); ``not-ready``: one is not ready and the change is not forced."""
    reasons: dict[str, str]
    """Each refused version → why (``"does not exist"``, ``"is stopped"``, ``"is building"``)."""


def refusal(
    targets: list[AliasTarget], versions: Mapping[str, Version | None], force: bool
) -> Refusal | None:
    """Whether an alias may point at ``targets``, the versions they name as ``versions``
    holds them (None: it may). A missing version is refused first, then a stopped one,
    then (unless forced) one not ready."""
    problems = unready_versions(targets, versions)
    missing = {name: why for name, why in problems.items() if why == "does not exist"}
    if missing:
        return Refusal("missing", missing)
    stopped = stopped_versions(targets, versions)
    if stopped:
        return Refusal("stopped", {name: problems[name] for name in stopped})
    if problems and not force:
        return Refusal("not-ready", problems)
    return None


def held_statuses(force: bool) -> frozenset[VersionStatus]:
    """The statuses in which a switch holds the versions it names once the alias is
    written: ready ones, or with ``force`` any but stopped or stopping (a version stopped
    meanwhile is never held: the switch is undone)."""
    return frozenset(VersionStatus) - frozenset(_STOPPED) if force else _READY


_READY = frozenset({VersionStatus.READY})


WAS_STOPPED = "was stopped"
"""Why a version being stopped (or stopped) could not be held for an alias."""


def why_not_held(status: VersionStatus) -> str:
    """Why a version found in ``status`` was not held: :data:`WAS_STOPPED`, ``"became
    failed"``."""
    return WAS_STOPPED if status in _STOPPED else f"became {status.value}"


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
