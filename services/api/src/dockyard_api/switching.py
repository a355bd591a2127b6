"""The alias switch: plan it, write the alias, hold its versions, wait for the routers, and
undo it when a version it names was stopped meanwhile.

Two calls: :func:`switch_alias` (point an alias where a request says) and
:func:`roll_back_alias` (point it back where it was). Both answer :class:`Switched` (the
alias written and how the router processes applied it) or raise a :class:`Problem`:
404 for a missing deployment, alias or version; 409 ``version-stopped`` and
``version-not-ready`` for versions an alias may not point at (see
:func:`dockyard_api.alias_rules.refusal`), and ``version-not-ready`` too when the switch was
undone; 409 ``conflict`` when another writer moved the alias meanwhile; 412 when
``If-Match`` does not hold. The decisions are :mod:`dockyard_api.alias_rules`.

Why versions are held: a stop reads the version, then the aliases, then writes at the
revision it read (:mod:`dockyard_api.stopping`). The switch writes the alias, then rewrites
each version it names unchanged at the revision it read. A stop that read the aliases before
this one landed fails its write against the hold and looks again, finding the alias; a stop
that wrote first makes the hold fail, and the switch points the alias back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from dockyard_api.alias_rules import (
    WAS_STOPPED,
    alias_after_rollback,
    alias_after_set,
    alias_pointed_back,
    held_statuses,
    refusal,
    why_not_held,
)
from dockyard_api.applied import Outcome
from dockyard_api.context import ApiContext
from dockyard_api.preconditions import check_if_match
from dockyard_api.problems import Problem
from dockyard_api.scopes import existing_deployment
from dockyard_common import Alias, AliasTarget, Conflict, EventType, Stored, Version, VersionStatus
from dockyard_common.subjects import alias_key, deployment_key, version_key

__all__ = [
    "PLATFORM",
    "AliasRollback",
    "AliasSwitch",
    "Switched",
    "roll_back_alias",
    "switch_alias",
]

PLATFORM = "platform"
"""Who the history names for a change the platform made itself (a switch undone)."""


@dataclass(frozen=True, kw_only=True)
class AliasSwitch:
    """Point an alias at a version or split it by weight, per region if needed."""

    owner: str
    project: str
    deployment: str
    alias: str
    target: AliasTarget
    regions: dict[str, AliasTarget]
    force: bool
    """Point at versions not ready yet (never at a stopped one)."""
    by: str
    """Who the alias's history names."""
    if_match: str | None = None
    """An ``If-Match`` header: the switch is then decided on the state of record only."""


@dataclass(frozen=True, kw_only=True)
class AliasRollback:
    """Point an alias back where it pointed before its current target."""

    owner: str
    project: str
    deployment: str
    alias: str
    force: bool
    by: str


@dataclass(frozen=True)
class Switched:
    """An alias change stored and gone live (or not within the bound: ``applied.lagging``)."""

    alias: Alias
    revision: int
    applied: Outcome
    """How the router processes applied it: how long it took, who lags."""


async def switch_alias(context: ApiContext, request: AliasSwitch) -> Switched:
    """Point the alias where ``request`` says, hold its versions, wait for the routers."""
    scope = (request.owner, request.project, request.deployment)
    key = alias_key(*scope, request.alias)

    def decide(current: Alias | None) -> Alias:
        return alias_after_set(
            current,
            owner=request.owner,
            project=request.project,
            deployment=request.deployment,
            name=request.alias,
            target=request.target,
            regions=request.regions,
            by=request.by,
        )

    async def plan_from_record() -> _Plan:
        # The deployment and the alias are read while the versions are checked.
        targets = [request.target, *request.regions.values()]
        _, held, current = await asyncio.gather(
            existing_deployment(context, *scope),
            _check_versions(context, *scope, targets, request.force),
            context.aliases.get(key),
        )
        check_if_match(request.if_match, current.revision if current else None)
        return _Plan(current=current, updated=decide(current.value if current else None), held=held)

    # A conditional switch is decided on the state of record only.
    recent = None if request.if_match else _recent_plan(context, scope, key, decide)
    written = await _write_plan(context, key, recent, plan_from_record, request.force)
    return await _go_live(context, written)


async def roll_back_alias(context: ApiContext, request: AliasRollback) -> Switched:
    """Point the alias back where it pointed before, hold those versions, wait for the
    routers. Decided on the state of record only: a rollback is relative to where the
    alias points, so one planned again after a concurrent rollback landed would undo it."""
    scope = (request.owner, request.project, request.deployment)
    key = alias_key(*scope, request.alias)

    async def plan_from_record() -> _Plan:
        current = await context.aliases.get(key)
        if current is None:
            raise Problem(404, "not-found", f"alias {request.alias!r} does not exist")
        updated = alias_after_rollback(current.value, request.by)
        targets = [updated.target, *updated.regions.values()]
        held = await _check_versions(context, *scope, targets, request.force)
        return _Plan(current=current, updated=updated, held=held)

    written = await _write_plan(context, key, None, plan_from_record, request.force)
    return await _go_live(context, written)


def _reasons(lost: dict[str, str]) -> str:
    return "; ".join(f"version {name!r} {reason}" for name, reason in sorted(lost.items()))


def _version_names(targets: list[AliasTarget]) -> list[str]:
    return sorted({name for target in targets for name in target.versions})


async def _read_versions(
    context: ApiContext, owner: str, project: str, deployment: str, targets: list[AliasTarget]
) -> dict[str, Stored[Version] | None]:
    """The record of each version the targets name (None: it does not exist)."""
    names = _version_names(targets)
    # Read at once: an alias switch waits on these round trips, and it should be instant.
    reads = await asyncio.gather(
        *(context.versions.get(version_key(owner, project, deployment, n)) for n in names)
    )
    return dict(zip(names, reads, strict=True))


async def _check_versions(
    context: ApiContext,
    owner: str,
    project: str,
    deployment: str,
    targets: list[AliasTarget],
    force: bool,
) -> dict[str, Stored[Version]]:
    """The records of the versions the targets name, for :func:`_hold_versions` once the
    alias is written; a :class:`Problem` when the alias may not point there.

    A stopped version never becomes ready by waiting, and a forced switch to it would send
    every call to a 404: the refusal names the call that starts it again."""
    reads = await _read_versions(context, owner, project, deployment, targets)
    found = {name: stored.value if stored else None for name, stored in reads.items()}
    refused = refusal(targets, found, force)
    if refused is None:
        return {name: stored for name, stored in reads.items() if stored}
    if refused.kind == "missing":
        raise Problem(404, "not-found", _reasons(refused.reasons))
    if refused.kind == "stopped":
        stopped = sorted(refused.reasons)
        starts = _start_calls(owner, project, deployment, stopped)
        raise Problem(
            409,
            "version-stopped",
            _reasons(refused.reasons)
            + f": an alias never points at a stopped version, forced or not. Start it again "
            f"({starts}) and switch once it is ready",
            stopped=stopped,
        )
    raise Problem(
        409,
        "version-not-ready",
        _reasons(refused.reasons) + ": wait until it is ready, or set force to point at it anyway",
        versions={name: why.removeprefix("is ") for name, why in refused.reasons.items()},
    )


_HOLD_ATTEMPTS = 5


async def _hold_versions(
    context: ApiContext,
    owner: str,
    project: str,
    deployment: str,
    held: dict[str, Stored[Version]],
    accepted: frozenset[VersionStatus],
) -> dict[str, str]:
    """After the alias write, rewrite each version it names unchanged; the versions that
    could not be held, with why (``"was stopped"``, ``"was removed"``, ...). A version
    found in a status not ``accepted`` is not held.

    A version rewritten for another reason (a status report) is read again and held at its
    new revision."""

    async def hold(name: str, stored: Stored[Version]) -> str | None:
        key = version_key(owner, project, deployment, name)
        if stored.value.status not in accepted:
            return why_not_held(stored.value.status)
        for _ in range(_HOLD_ATTEMPTS):
            try:
                await context.versions.update(key, stored.value, stored.revision)
                return None
            except Conflict:
                fresh = await context.versions.get(key)
                if fresh is None:
                    return "was removed"
                if fresh.value.status not in accepted:
                    return why_not_held(fresh.value.status)
                stored = fresh
        return "kept changing"  # not safe to call it held

    names = sorted(held)
    outcomes = await asyncio.gather(*(hold(name, held[name]) for name in names))
    return {name: why for name, why in zip(names, outcomes, strict=True) if why is not None}


async def _routers_applied(context: ApiContext, revision: int) -> Outcome:
    """Until every live router process serves the change (or the bound)."""
    return await context.routers.wait_applied(revision, context.settings.switch_wait_s)


@dataclass(frozen=True, kw_only=True)
class _Written:
    """An alias change just written, going live."""

    key: str
    updated: Alias
    revision: int
    before: Stored[Alias] | None
    held: dict[str, Stored[Version]]
    """The records of the versions it names, as read when they were checked."""
    force: bool


async def _go_live(context: ApiContext, written: _Written) -> Switched:
    """Hold the alias's versions while the routers apply the change (both wait on other
    processes, so they overlap). If a version could not be held, point the alias back at
    once, wait for that instead, and answer 409."""
    live = asyncio.create_task(_routers_applied(context, written.revision))
    try:
        lost = await _hold_versions(
            context, *written.updated.scope, written.held, held_statuses(written.force)
        )
    except BaseException:
        live.cancel()
        raise
    if not lost:
        return Switched(written.updated, written.revision, await live)
    live.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await live
    if written.before is None:
        raise Problem(
            409,
            "version-not-ready",
            f"{_reasons(lost)} while the alias was created: it was stored pointing there; "
            "point it at a ready version",
        )
    await _point_back(context, written, written.before, lost)


async def _point_back(
    context: ApiContext, written: _Written, before: Stored[Alias], lost_here: dict[str, str]
) -> NoReturn:
    """Point the alias back where it was, hold those versions, wait for the routers: 409,
    ``version-stopped`` with the call that starts it again when a version was being stopped
    (a stop that landed between the switch's check and its hold)."""
    why = _reasons(lost_here)
    back = alias_pointed_back(written.updated, before.value, PLATFORM)
    try:
        reverted = await context.aliases.update(
            written.key, back, written.revision, announce=EventType.ALIAS_CHANGED
        )
    except Conflict:
        raise Problem(
            409,
            "conflict",
            f"{why} while the alias was being set, and the alias changed since: it was not "
            "pointed back; check where it points",
        ) from None
    # The versions pointed back at are held too: one may have been stopped while the alias
    # pointed away from it. It was ready, or forced, then: only a stop loses it now.
    reads = await _read_versions(context, *back.scope, [back.target, *back.regions.values()])
    found = {name: stored for name, stored in reads.items() if stored}
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_routers_applied(context, reverted))
        holding = tasks.create_task(
            _hold_versions(context, *back.scope, found, held_statuses(force=True))
        )
    lost = holding.result()
    lost.update({name: "was removed" for name, stored in reads.items() if stored is None})
    also = f", but {_reasons(lost)} too: point it at a ready version" if lost else ""
    stopped = sorted(name for name, reason in lost_here.items() if reason == WAS_STOPPED)
    if stopped:
        raise Problem(
            409,
            "version-stopped",
            f"{why} while the alias was being set: it points where it did before{also}. "
            f"Start it again ({_start_calls(*back.scope, stopped)}) and switch once it is ready",
            stopped=stopped,
            revision=reverted,
        )
    raise Problem(
        409,
        "version-not-ready",
        f"{why} while the alias was being set: it points where it did before{also}",
        revision=reverted,
    )


def _start_calls(owner: str, project: str, deployment: str, names: list[str]) -> str:
    versions = f"/v1/projects/{owner}/{project}/deployments/{deployment}/versions"
    return " and ".join(f"POST {versions}/{name}/start" for name in names)


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """A switch decided, not yet written: the alias as read and as it will be, and the
    records of the versions it names (held at those revisions once it is written)."""

    current: Stored[Alias] | None
    updated: Alias
    held: dict[str, Stored[Version]]


def _recent_plan(
    context: ApiContext, scope: tuple[str, str, str], key: str, decide: Callable[[Alias], Alias]
) -> _Plan | None:
    """The switch decided from what this process knows without a round trip (the buckets
    it follows), when it knows all of it and all of it lets the switch through, every
    version ready. None otherwise: the state of record decides, and gives a refusal its
    reason (a forced switch to a version not ready is decided there too)."""
    if context.deployments.recent(deployment_key(*scope)) is None:
        return None
    current = context.aliases.recent(key)
    if current is None:
        return None
    updated = decide(current.value)
    held: dict[str, Stored[Version]] = {}
    for name in _version_names([updated.target, *updated.regions.values()]):
        stored = context.versions.recent(version_key(*scope, name))
        if stored is None or stored.value.status is not VersionStatus.READY:
            return None
        held[name] = stored
    return _Plan(current=current, updated=updated, held=held)


async def _write_plan(
    context: ApiContext,
    key: str,
    recent: _Plan | None,
    plan_from_record: Callable[[], Awaitable[_Plan]],
    force: bool,
) -> _Written:
    """Write the switch planned from what this process knows. If there is no such plan, or
    the alias has moved on since (another API process switched it, or the follow was a
    write behind), plan it from the state of record and write that, as a switch that read
    the record first would: a conflict then is a concurrent change, 409. Planning again is
    for a switch to where the request says (a PUT): a rollback, relative to where the alias
    points, comes here with no plan from memory.

    An alias switch waits on every round trip before its write, and there were three reads
    (deployment, versions, alias): planning from the followed buckets takes that round trip
    off a switch here (bench/router.py measures it). A version the plan names is held after
    the write, at the revision this process knew, so one stopped meanwhile is still caught."""
    if recent is not None:
        with contextlib.suppress(Conflict):
            return await _write(context, key, recent, force)
    plan = await plan_from_record()
    try:
        return await _write(context, key, plan, force)
    except Conflict:
        name = plan.updated.name
        raise Problem(409, "conflict", f"alias {name!r} changed meanwhile; retry") from None


async def _write(context: ApiContext, key: str, plan: _Plan, force: bool) -> _Written:
    if plan.current is None:
        revision = await context.aliases.create(key, plan.updated, announce=EventType.ALIAS_CHANGED)
    else:
        revision = await context.aliases.update(
            key, plan.updated, plan.current.revision, announce=EventType.ALIAS_CHANGED
        )
    return _Written(
        key=key,
        updated=plan.updated,
        revision=revision,
        before=plan.current,
        held=plan.held,
        force=force,
    )
