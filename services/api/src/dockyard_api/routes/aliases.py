"""Aliases: names such as ``staging`` and ``production`` that switch and roll back in one call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockyard_api.accounts import Principal
from dockyard_api.aliases import (
    alias_after_rollback,
    alias_after_set,
    alias_pointed_back,
    stopped_versions,
    unready_versions,
)
from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, check_if_match, etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, response_header
from dockyard_api.scopes import existing_deployment
from dockyard_common import (
    Alias,
    AliasChange,
    AliasName,
    AliasTarget,
    Conflict,
    EventType,
    Stored,
    TargetName,
    Version,
    VersionName,
    VersionStatus,
)
from dockyard_common.subjects import alias_key, deployment_key, version_key

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/aliases", tags=["aliases"]
)

Context = Annotated[ApiContext, Depends(get_context)]
AliasPath = Annotated[AliasName, Path(description="Alias name, e.g. production.")]


class AliasIn(BaseModel):
    """``PUT .../aliases/{alias}``: a version, or weights (a canary), per region if needed."""

    model_config = ConfigDict(extra="forbid")

    version: VersionName | None = None
    weights: dict[VersionName, Annotated[int, Field(ge=0, le=100)]] | None = None
    regions: dict[TargetName, AliasTarget] = Field(
        default_factory=dict, description="Per-region overrides: region → version or weights."
    )
    force: bool = Field(
        default=False,
        description="Point at versions not ready yet (building, deploying, failed); never at "
        "a stopped one.",
    )

    @model_validator(mode="after")
    def _valid_target(self) -> AliasIn:
        self.target  # noqa: B018 - validates the version/weights pair, raising ValueError
        return self

    @property
    def target(self) -> AliasTarget:
        """Where the alias points outside the overridden regions."""
        return AliasTarget(version=self.version, weights=self.weights)


_PLATFORM = "platform"
"""Who the history names for a change the platform made itself."""


def _actor(caller: Principal) -> str:
    return caller.token_id or "platform-admin"


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
    """Check the versions the targets name (404 missing, 409 stopped, 409 not ready unless
    forced); the records read, for :func:`_hold_versions` once the alias is written.

    A stopped version never becomes ready by waiting, and a forced switch to it would send
    every call to a 404: the refusal names the call that starts it again."""
    reads = await _read_versions(context, owner, project, deployment, targets)
    found = {name: stored.value if stored else None for name, stored in reads.items()}
    problems = unready_versions(targets, found)
    missing = {n: why for n, why in problems.items() if why == "does not exist"}
    if missing:
        raise Problem(404, "not-found", _reasons(missing))
    stopped = stopped_versions(targets, found)
    if stopped:
        versions = f"/v1/projects/{owner}/{project}/deployments/{deployment}/versions"
        starts = " and ".join(f"POST {versions}/{name}/start" for name in stopped)
        raise Problem(
            409,
            "version-stopped",
            _reasons({name: problems[name] for name in stopped})
            + f": an alias never points at a stopped version, forced or not. Start it again "
            f"({starts}) and switch once it is ready",
            stopped=stopped,
        )
    if problems and not force:
        raise Problem(
            409,
            "version-not-ready",
            _reasons(problems) + ": wait until it is ready, or set force to point at it anyway",
            versions={name: why.removeprefix("is ") for name, why in problems.items()},
        )
    return {name: stored for name, stored in reads.items() if stored}


_HOLD_ATTEMPTS = 5
_STOPPED = frozenset({VersionStatus.STOPPING, VersionStatus.STOPPED})
_ANY = frozenset(VersionStatus)
_READY = frozenset({VersionStatus.READY})


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

    A stop reads the version, then the aliases, then writes at the revision it read. One
    that read the aliases before this alias landed fails its write against the hold and
    looks again, finding the alias; one that wrote first makes the hold fail, and then the
    version is no longer ready (a forced switch accepts any status, as it did when it was
    asked for). A version rewritten for another reason (a status report) is read again and
    held at its new revision."""

    async def hold(name: str, stored: Stored[Version]) -> str | None:
        key = version_key(owner, project, deployment, name)
        if stored.value.status not in accepted:
            return _why_not_held(stored.value.status)
        for _ in range(_HOLD_ATTEMPTS):
            try:
                await context.versions.update(key, stored.value, stored.revision)
                return None
            except Conflict:
                fresh = await context.versions.get(key)
                if fresh is None:
                    return "was removed"
                if fresh.value.status not in accepted:
                    return _why_not_held(fresh.value.status)
                stored = fresh
        return "kept changing"  # not safe to call it held

    names = sorted(held)
    outcomes = await asyncio.gather(*(hold(name, held[name]) for name in names))
    return {name: why for name, why in zip(names, outcomes, strict=True) if why is not None}


def _why_not_held(status: VersionStatus) -> str:
    return "was stopped" if status in _STOPPED else f"became {status.value}"


_SWITCH_HEADERS = {
    "ETag": response_header("The alias's new revision, for If-Match."),
    "X-Dockyard-Switch-Ms": response_header(
        "How long the router processes took to apply the change."
    ),
    "X-Dockyard-Routers": response_header("How many live router processes were waited for."),
}
_SWITCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Stored, and applied by every live router process.",
        "headers": _SWITCH_HEADERS,
    },
    202: {
        "model": Alias,
        "description": "Stored, but some router processes had not applied "
        "it within the bound: X-Dockyard-Lagging names them.",
        "headers": {
            **_SWITCH_HEADERS,
            "X-Dockyard-Lagging": response_header(
                "The router processes that lag, comma-separated."
            ),
        },
    },
}


async def _answer_when_live(context: ApiContext, revision: int, response: Response) -> None:
    """Wait until every live router process serves the change; say how long it took."""
    outcome = await context.routers.wait_applied(revision, context.settings.switch_wait_s)
    response.headers["X-Dockyard-Switch-Ms"] = f"{outcome.seconds * 1000:.1f}"
    response.headers["X-Dockyard-Routers"] = str(outcome.processes)
    if outcome.lagging:
        response.status_code = 202
        response.headers["X-Dockyard-Lagging"] = ",".join(outcome.lagging)


@dataclass(frozen=True, kw_only=True)
class _Switch:
    """An alias change just written, going live."""

    key: str
    updated: Alias
    revision: int
    before: Stored[Alias] | None
    held: dict[str, Stored[Version]]
    """The records of the versions it names, as read when they were checked."""
    force: bool


async def _go_live(context: ApiContext, switch: _Switch, response: Response) -> None:
    """Hold the alias's versions while the routers apply the change (both wait on other
    processes, so they overlap). If a version could not be held, point the alias back at
    once, wait for that instead, and answer 409."""
    live = asyncio.create_task(_answer_when_live(context, switch.revision, response))
    # Forced or not, a version stopped meanwhile is not held: the alias is pointed back.
    accepted = _ANY - _STOPPED if switch.force else _READY
    try:
        lost = await _hold_versions(context, *switch.updated.scope, switch.held, accepted)
    except BaseException:
        live.cancel()
        raise
    if not lost:
        await live
        return
    live.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await live
    if switch.before is None:
        raise Problem(
            409,
            "version-not-ready",
            f"{_reasons(lost)} while the alias was created: it was stored pointing there; "
            "point it at a ready version",
        )
    await _point_back(context, switch, switch.before, _reasons(lost), response)


async def _point_back(
    context: ApiContext, switch: _Switch, before: Stored[Alias], why: str, response: Response
) -> NoReturn:
    """Point the alias back where it was, hold those versions, wait for the routers: 409."""
    back = alias_pointed_back(switch.updated, before.value, _PLATFORM)
    try:
        reverted = await context.aliases.update(
            switch.key, back, switch.revision, announce=EventType.ALIAS_CHANGED
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
        tasks.create_task(_answer_when_live(context, reverted, response))
        holding = tasks.create_task(_hold_versions(context, *back.scope, found, _ANY - _STOPPED))
    lost = holding.result()
    lost.update({name: "was removed" for name, stored in reads.items() if stored is None})
    also = f", but {_reasons(lost)} too: point it at a ready version" if lost else ""
    raise Problem(
        409,
        "version-not-ready",
        f"{why} while the alias was being set: it points where it did before{also}",
        revision=reverted,
    )


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
) -> _Switch:
    """Write the switch planned from what this process knows. If there is no such plan, or
    the alias has moved on since (another API process switched it, or the follow was a
    write behind), plan it from the state of record and write that, as a switch that read
    the record first would: a conflict then is a concurrent change, 409. Planning again is
    for a switch to where the request says (a PUT): a rollback, relative to where the alias
    points, comes here with no plan from memory.

    An alias switch waits on every round trip before its write, and there were three reads
    (deployment, versions, alias): planning from the followed buckets took that round trip,
    0.4-0.6 ms at the median, off a switch here (bench/README.md). A version the plan names
    is held after the write, at the revision this process knew, so one stopped meanwhile is
    still caught (see :func:`_hold_versions`)."""
    if recent is not None:
        with contextlib.suppress(Conflict):
            return await _write(context, key, recent, force)
    plan = await plan_from_record()
    try:
        return await _write(context, key, plan, force)
    except Conflict:
        name = plan.updated.name
        raise Problem(409, "conflict", f"alias {name!r} changed meanwhile; retry") from None


async def _write(context: ApiContext, key: str, plan: _Plan, force: bool) -> _Switch:
    if plan.current is None:
        revision = await context.aliases.create(key, plan.updated, announce=EventType.ALIAS_CHANGED)
    else:
        revision = await context.aliases.update(
            key, plan.updated, plan.current.revision, announce=EventType.ALIAS_CHANGED
        )
    return _Switch(
        key=key,
        updated=plan.updated,
        revision=revision,
        before=plan.current,
        held=plan.held,
        force=force,
    )


def _switched(alias: Alias, response: Response) -> Response:
    """The answer of a switch, serialised once: an alias carries its history, and FastAPI's
    validate-then-serialise of the return value cost a switch about a millisecond."""
    return Response(
        content=alias.model_dump_json(by_alias=True),
        status_code=response.status_code or 200,
        headers=dict(response.headers),
        media_type="application/json",
    )


@router.put("/{alias}", response_model=Alias, responses=_SWITCH_RESPONSES)
async def put_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    body: AliasIn,
    response: Response,
    caller: Deployer,
    context: Context,
    if_match: IfMatch = None,
) -> Response:
    """Point the alias at a version or split it by weight; the last 20 changes are kept."""
    key = alias_key(owner, project, deployment, alias)

    def decide(current: Alias | None) -> Alias:
        return alias_after_set(
            current,
            owner=owner,
            project=project,
            deployment=deployment,
            name=alias,
            target=body.target,
            regions=body.regions,
            by=_actor(caller),
        )

    async def plan_from_record() -> _Plan:
        # The deployment and the alias are read while the versions are checked.
        targets = [body.target, *body.regions.values()]
        _, held, current = await asyncio.gather(
            existing_deployment(context, owner, project, deployment),
            _check_versions(context, owner, project, deployment, targets, body.force),
            context.aliases.get(key),
        )
        check_if_match(if_match, current.revision if current else None)
        return _Plan(current=current, updated=decide(current.value if current else None), held=held)

    scope = (owner, project, deployment)
    # A conditional switch is decided on the state of record only.
    recent = None if if_match else _recent_plan(context, scope, key, decide)
    switch = await _write_plan(context, key, recent, plan_from_record, body.force)
    response.headers["ETag"] = etag(switch.revision)
    await _go_live(context, switch, response)
    return _switched(switch.updated, response)


@router.post("/{alias}/rollback", response_model=Alias, responses=_SWITCH_RESPONSES)
async def rollback_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    response: Response,
    caller: Deployer,
    context: Context,
    force: Annotated[
        bool, Query(description="Roll back to versions not ready yet; never to a stopped one.")
    ] = False,
) -> Response:
    """Point the alias back where it pointed before its current target.

    Decided on the state of record only: a rollback is relative to where the alias points,
    so one planned again after a concurrent rollback landed would undo that one."""
    key = alias_key(owner, project, deployment, alias)

    async def plan_from_record() -> _Plan:
        current = await context.aliases.get(key)
        if current is None:
            raise Problem(404, "not-found", f"alias {alias!r} does not exist")
        updated = alias_after_rollback(current.value, _actor(caller))
        targets = [updated.target, *updated.regions.values()]
        held = await _check_versions(context, owner, project, deployment, targets, force)
        return _Plan(current=current, updated=updated, held=held)

    switch = await _write_plan(context, key, None, plan_from_record, force)
    response.headers["ETag"] = etag(switch.revision)
    await _go_live(context, switch, response)
    return _switched(switch.updated, response)


@router.get("")
async def list_aliases(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    caller: Viewer,
    context: Context,
) -> Page[Alias]:
    """The deployment's aliases."""
    await existing_deployment(context, owner, project, deployment)
    prefix = alias_key(owner, project, deployment, "")
    return Page(items=[s.value async for _, s in context.aliases.items(prefix)])


@router.get("/{alias}")
async def get_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    response: Response,
    caller: Viewer,
    context: Context,
) -> Alias:
    """Where the alias points now."""
    stored = await context.aliases.get(alias_key(owner, project, deployment, alias))
    if stored is None:
        raise Problem(404, "not-found", f"alias {alias!r} does not exist")
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.get("/{alias}/history")
async def alias_history(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    caller: Viewer,
    context: Context,
) -> Page[AliasChange]:
    """Every change of the alias, newest first."""
    stored = await context.aliases.get(alias_key(owner, project, deployment, alias))
    if stored is None:
        raise Problem(404, "not-found", f"alias {alias!r} does not exist")
    return Page(items=list(reversed(stored.value.history)))
