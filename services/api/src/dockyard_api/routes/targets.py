"""Targets: the places endpoints run (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from dockyard_api.auth import AdminAuth
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import TargetIn
from dockyard_api.listing import Page
from dockyard_api.problems import Problem
from dockyard_common import Target, TargetName

__all__ = ["router"]

router = APIRouter(prefix="/v1/targets", tags=["targets"], dependencies=[AdminAuth])

TargetPath = Annotated[TargetName, Path(description="Target name, a DNS label.")]


@router.put("/{target}", status_code=201)
async def put_target(
    target: TargetPath,
    body: TargetIn,
    response: Response,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Target:
    """Create or replace a target; 201 when new, 200 when replaced."""
    value = Target(name=target, **body.model_dump())
    current = await context.targets.get(target)
    if current is None:
        revision = await context.targets.create(target, value)
    else:
        revision = await context.targets.update(target, value, current.revision)
        response.status_code = 200
    response.headers["ETag"] = f'"{revision}"'
    return value


@router.get("")
async def list_targets(context: Annotated[ApiContext, Depends(get_context)]) -> Page[Target]:
    """Every target."""
    return Page(items=[stored.value async for _, stored in context.targets.items()])


@router.get("/{target}")
async def get_target(
    target: TargetPath, response: Response, context: Annotated[ApiContext, Depends(get_context)]
) -> Target:
    """One target."""
    stored = await context.targets.get(target)
    if stored is None:
        raise Problem(404, "not-found", f"target {target!r} does not exist")
    response.headers["ETag"] = f'"{stored.revision}"'
    return stored.value
