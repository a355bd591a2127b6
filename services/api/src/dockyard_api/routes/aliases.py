"""Aliases: names such as ``staging`` and ``production`` that switch and roll back in one call."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockyard_api.accounts import Principal
from dockyard_api.aliases import alias_after_rollback, alias_after_set, unready_versions
from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, check_if_match, etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath
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
)
from dockyard_common.subjects import alias_key, version_key

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
    force: bool = Field(default=False, description="Point at versions that are not ready.")

    @model_validator(mode="after")
    def _valid_target(self) -> AliasIn:
        self.target  # noqa: B018 - validates the version/weights pair, raising ValueError
        return self

    @property
    def target(self) -> AliasTarget:
        """Where the alias points outside the overridden regions."""
        return AliasTarget(version=self.version, weights=self.weights)


def _actor(caller: Principal) -> str:
    return caller.token_id or "platform-admin"


async def _check_versions(
    context: ApiContext,
    owner: str,
    project: str,
    deployment: str,
    targets: list[AliasTarget],
    force: bool,
) -> None:
    """Check the versions the targets name, and hold them: each is rewritten unchanged at
    the revision read, so a stop that started before this check fails its own write and
    looks again (409 here if it won). A stop landing between this hold and the alias write
    (one KV write long) can still slip through; closing it needs the version record to
    carry its aliases."""
    names = sorted({name for target in targets for name in target.versions})
    # Read at once: an alias switch waits on these round trips, and it should be instant.
    reads = await asyncio.gather(
        *(context.versions.get(version_key(owner, project, deployment, n)) for n in names)
    )
    found: dict[str, Version | None] = {}
    held: dict[str, Stored[Version]] = {}
    for name, stored in zip(names, reads, strict=True):
        found[name] = stored.value if stored else None
        if stored is not None:
            held[name] = stored
    problems = unready_versions(targets, found)
    missing = {n: why for n, why in problems.items() if why == "does not exist"}
    if missing:
        raise Problem(
            404,
            "not-found",
            "; ".join(f"version {n!r} {why}" for n, why in sorted(missing.items())),
        )
    if problems and not force:
        raise Problem(
            409,
            "version-not-ready",
            "; ".join(f"version {n!r} {why}" for n, why in sorted(problems.items()))
            + ": wait until it is ready, or pass force",
        )
    holds = await asyncio.gather(
        *(
            context.versions.update(
                version_key(owner, project, deployment, name), stored.value, stored.revision
            )
            for name, stored in sorted(held.items())
        ),
        return_exceptions=True,
    )
    for name, outcome in zip(sorted(held), holds, strict=True):
        if isinstance(outcome, Conflict):
            raise Problem(
                409, "conflict", f"version {name!r} changed meanwhile (stopped?); retry"
            ) from None
        if isinstance(outcome, BaseException):
            raise outcome


_SWITCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": Alias,
        "description": "Stored, but some router processes had not applied "
        "it within the bound: X-Dockyard-Lagging names them.",
    },
}


async def _answer_when_live(context: ApiContext, revision: int, response: Response) -> None:
    """Wait until every live router process serves the change; say how long it took."""
    outcome = await context.routers.wait_applied(revision, context.settings.switch_wait_s)
    response.headers["X-Dockyard-Switch-Ms"] = f"{outcome.seconds * 1000:.1f}"
    response.headers["X-Dockyard-Routers"] = str(outcome.routers)
    if outcome.lagging:
        response.status_code = 202
        response.headers["X-Dockyard-Lagging"] = ",".join(outcome.lagging)


async def _write(context: ApiContext, key: str, alias: Alias, revision: int | None) -> int:
    try:
        if revision is None:
            return await context.aliases.create(key, alias, announce=EventType.ALIAS_CHANGED)
        return await context.aliases.update(key, alias, revision, announce=EventType.ALIAS_CHANGED)
    except Conflict:
        raise Problem(409, "conflict", f"alias {alias.name!r} changed meanwhile; retry") from None


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
    # The deployment and the alias are read while the versions are checked and held.
    _, _, current = await asyncio.gather(
        existing_deployment(context, owner, project, deployment),
        _check_versions(
            context, owner, project, deployment, [body.target, *body.regions.values()], body.force
        ),
        context.aliases.get(key),
    )
    check_if_match(if_match, current.revision if current else None)
    target = body.target
    updated = alias_after_set(
        current.value if current else None,
        owner=owner,
        project=project,
        deployment=deployment,
        name=alias,
        target=target,
        regions=body.regions,
        by=_actor(caller),
    )
    revision = await _write(context, key, updated, current.revision if current else None)
    response.headers["ETag"] = etag(revision)
    await _answer_when_live(context, revision, response)
    return _switched(updated, response)


@router.post("/{alias}/rollback", response_model=Alias, responses=_SWITCH_RESPONSES)
async def rollback_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    response: Response,
    caller: Deployer,
    context: Context,
    force: Annotated[bool, Query(description="Roll back to versions that are not ready.")] = False,
) -> Response:
    """Point the alias back where it pointed before its current target."""
    key = alias_key(owner, project, deployment, alias)
    current = await context.aliases.get(key)
    if current is None:
        raise Problem(404, "not-found", f"alias {alias!r} does not exist")
    updated = alias_after_rollback(current.value, _actor(caller))
    await _check_versions(
        context, owner, project, deployment, [updated.target, *updated.regions.values()], force
    )
    revision = await _write(context, key, updated, current.revision)
    response.headers["ETag"] = etag(revision)
    await _answer_when_live(context, revision, response)
    return _switched(updated, response)


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
