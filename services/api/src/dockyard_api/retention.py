"""Warm rollback: which versions keep running for a quick rollback, which may stop. Pure, no I/O.

Rollback is instant only if the version rolled back to still runs. Every version an alias
points to (by weight too, in any region) runs; so does every version named by the last
``keep_changes`` distinct pointings of each alias (re-applying a pointing is no change).
Any other version is stopped once ``grace`` has passed since it left that window (or since
it was created, if no alias ever named it), except the deployment's newest version, which a
user has just submitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dockyard_common.models import Alias, AliasChange, Version, VersionStatus

__all__ = ["RetentionPolicy", "retained_versions", "versions_to_stop"]

_RUNNING = (VersionStatus.BUILT, VersionStatus.DEPLOYING, VersionStatus.READY, VersionStatus.FAILED)


@dataclass(frozen=True)
class RetentionPolicy:
    """How many alias changes keep their versions warm, and how long others get."""

    keep_changes: int = 3
    grace: timedelta = timedelta(hours=1)


def _versions_of(change: AliasChange) -> set[str]:
    found = set(change.target.versions)
    for override in change.regions.values():
        found.update(override.versions)
    return found


def _newest_first(alias: Alias) -> list[AliasChange]:
    """The alias's changes, newest first, a change that re-applied the same pointing dropped:
    CI re-applying ``production=A`` must not push the rollback target out of the window."""
    distinct: list[AliasChange] = []
    for change in sorted(alias.history, key=lambda change: change.at, reverse=True):
        if distinct and _versions_of(distinct[-1]) == _versions_of(change):
            continue
        distinct.append(change)
    return distinct


def retained_versions(aliases: list[Alias], keep_changes: int) -> set[str]:
    """The versions aliases point to now, and those of each alias's last ``keep_changes``."""
    retained: set[str] = set()
    for alias in aliases:
        retained.update(alias.versions)
        for change in _newest_first(alias)[:keep_changes]:
            retained.update(_versions_of(change))
    return retained


def _left_window_at(version: Version, aliases: list[Alias], keep_changes: int) -> datetime:
    """When the version stopped being retained: the change that pushed its last mention
    out of an alias's window (the latest such moment over all aliases), else its creation;
    never before it was last started again (a start asks for it to run)."""
    left = max(version.created_at, version.started_at or version.created_at)
    for alias in aliases:
        changes = _newest_first(alias)
        for position, change in enumerate(changes):
            if version.name in _versions_of(change):
                pushed_by = changes[max(0, position - keep_changes)]
                left = max(left, pushed_by.at)
                break
    return left


def versions_to_stop(
    versions: list[Version], aliases: list[Alias], policy: RetentionPolicy, now: datetime
) -> list[Version]:
    """The running versions of one deployment that retention stops now, oldest first."""
    if not versions:
        return []
    newest = max(versions, key=lambda v: (v.created_at, v.name))
    retained = retained_versions(aliases, policy.keep_changes)
    stop = [
        version
        for version in versions
        if version.status in _RUNNING
        and version.name not in retained
        and version.name != newest.name
        and now - _left_window_at(version, aliases, policy.keep_changes) >= policy.grace
    ]
    return sorted(stop, key=lambda v: v.created_at)
