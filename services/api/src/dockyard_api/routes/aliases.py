"""Aliases: names such as ``staging`` and ``production`` that switch and roll back in one call.

The switch itself (plan, write, hold the versions, wait for the routers, undo) is
:mod:`dockyard_api.switching`; here it is parsed, authorised and answered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockyard_api.accounts import Principal
from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, response_header
from dockyard_api.scopes import existing_deployment
from dockyard_api.switching import (
    AliasRollback,
    AliasSwitch,
    Switched,
    roll_back_alias,
    switch_alias,
)
from dockyard_common import Alias, AliasChange, AliasName, AliasTarget, TargetName, VersionName
from dockyard_common.subjects import alias_key

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


def _actor(caller: Principal) -> str:
    return caller.token_id or "platform-admin"


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


def _answer(switched: Switched) -> Response:
    """The answer of a switch: 200 once every live router process applied it, 202 naming
    the ones that had not within the bound. The alias is serialised once: it carries its
    history, and FastAPI's validate-then-serialise of a return value cost a switch about a
    millisecond."""
    applied = switched.applied
    headers = {
        "ETag": etag(switched.revision),
        "X-Dockyard-Switch-Ms": f"{applied.seconds * 1000:.1f}",
        "X-Dockyard-Routers": str(applied.processes),
    }
    if applied.lagging:
        headers["X-Dockyard-Lagging"] = ",".join(applied.lagging)
    return Response(
        content=switched.alias.model_dump_json(by_alias=True),
        status_code=202 if applied.lagging else 200,
        headers=headers,
        media_type="application/json",
    )


@router.put("/{alias}", response_model=Alias, responses=_SWITCH_RESPONSES)
async def put_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    body: AliasIn,
    caller: Deployer,
    context: Context,
    if_match: IfMatch = None,
) -> Response:
    """Point the alias at a version or split it by weight; the last 20 changes are kept."""
    switch = AliasSwitch(
        owner=owner,
        project=project,
        deployment=deployment,
        alias=alias,
        target=body.target,
        regions=body.regions,
        force=body.force,
        by=_actor(caller),
        if_match=if_match,
    )
    return _answer(await switch_alias(context, switch))


@router.post("/{alias}/rollback", response_model=Alias, responses=_SWITCH_RESPONSES)
async def rollback_alias(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    alias: AliasPath,
    caller: Deployer,
    context: Context,
    force: Annotated[
        bool, Query(description="Roll back to versions not ready yet; never to a stopped one.")
    ] = False,
) -> Response:
    """Point the alias back where it pointed before its current target.

    Decided on the state of record only: a rollback is relative to where the alias points,
    so one planned again after a concurrent rollback landed would undo that one."""
    rollback = AliasRollback(
        owner=owner,
        project=project,
        deployment=deployment,
        alias=alias,
        force=force,
        by=_actor(caller),
    )
    return _answer(await roll_back_alias(context, rollback))


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
