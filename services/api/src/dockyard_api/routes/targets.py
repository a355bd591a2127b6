"""Targets: the places endpoints run (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from dockyard_api.auth import Caller, PlatformAdmin
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import TargetIn
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, check_if_match, etag
from dockyard_api.problems import Problem
from dockyard_common import Target, TargetName

__all__ = ["router"]

router = APIRouter(prefix="/v1/targets", tags=["targets"])

TargetPath = Annotated[TargetName, Path(description="Target name, a DNS label.")]


@router.put(
    "/{target}", status_code=201, responses={200: {"model": Target, "description": "Replaced"}}
)
async def put_target(
    target: TargetPath,
    body: TargetIn,
    response: Response,
    caller: PlatformAdmin,
    context: Annotated[ApiContext, Depends(get_context)],
    if_match: IfMatch = None,
) -> Target:
    """Create or replace a target (platform admin); 201 when new, 200 when replaced."""
    value = Target(name=target, **body.model_dump())
    current = await context.targets.get(target)
    check_if_match(if_match, current.revision if current else None)
    if current is None:
        revision = await context.targets.create(target, value)
    else:
        revision = await context.targets.update(target, value, current.revision)
        response.status_code = 200
    response.headers["ETag"] = etag(revision)
    return value


@router.get("")
async def list_targets(
    caller: Caller, context: Annotated[ApiContext, Depends(get_context)]
) -> Page[Target]:
    """Every target (any token may read them, to choose where to deploy)."""
    return Page(items=[stored.value async for _, stored in context.targets.items()])


@router.get("/{target}")
async def get_target(
    target: TargetPath,
    response: Response,
    caller: Caller,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Target:
    """One target."""
    stored = await context.targets.get(target)
    if stored is None:
        raise Problem(404, "not-found", f"target {target!r} does not exist")
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.delete("/{target}", status_code=204)
async def delete_target(
    target: TargetPath,
    caller: PlatformAdmin,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Response:
    """Remove a target (platform admin); 409 while a deployment is placed on it."""
    if await context.targets.get(target) is None:
        raise Problem(404, "not-found", f"target {target!r} does not exist")
    users = [
        f"{d.value.owner}/{d.value.project}/{d.value.name}"
        async for _, d in context.deployments.items()
        if target in d.value.targets
    ]
    if users:
        raise Problem(409, "in-use", f"target {target!r} is used by {', '.join(users)}")
    await context.targets.delete(target)
    return Response(status_code=204)
