"""Regions: an operator drains one to move requests out of it (platform admin).

A region's drain is state of record (``dockyard_regions``), announced as
``platform.region.drained`` / ``platform.region.undrained``; every router process follows
the bucket, so a restarted Redis or router cannot undrain a region.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict

from dockyard_api.auth import Caller, PlatformAdmin
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.preconditions import etag
from dockyard_common import Conflict, EventType, TargetName, utcnow
from dockyard_common.platform_facts import Region
from dockyard_common.subjects import region_key

__all__ = ["router"]

router = APIRouter(prefix="/v1/regions", tags=["regions"])

RegionPath = Annotated[TargetName, Path(description="Region name, a DNS label (eu, us).")]


class RegionIn(BaseModel):
    """``PUT /v1/regions/{region}``."""

    model_config = ConfigDict(extra="forbid")

    drained: bool


@router.put("/{region}")
async def put_region(
    region: RegionPath,
    body: RegionIn,
    response: Response,
    caller: PlatformAdmin,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Region:
    """Drain (``{"drained": true}``) or undrain a region: routers send a drained region no
    requests while another region can serve them; requests under way finish."""
    key = region_key(region)
    announce = (
        EventType.PLATFORM_REGION_DRAINED if body.drained else EventType.PLATFORM_REGION_UNDRAINED
    )
    value = Region(name=region, drained=body.drained, updated_at=utcnow())
    for _ in range(10):
        current = await context.regions.get(key)
        if current is not None and current.value.drained == body.drained:
            response.headers["ETag"] = etag(current.revision)
            return current.value  # already so: nothing written, nothing announced
        try:
            if current is None:
                revision = await context.regions.create(key, value, announce=announce)
            else:
                revision = await context.regions.update(
                    key, value, current.revision, announce=announce
                )
        except Conflict:
            continue  # another operator's change landed meanwhile: look again
        response.headers["ETag"] = etag(revision)
        return value
    raise Conflict(f"region {region!r} kept changing; retry")


@router.get("")
async def list_regions(
    caller: Caller, context: Annotated[ApiContext, Depends(get_context)]
) -> Page[Region]:
    """Every region an operator has drained or undrained (others serve)."""
    return Page(items=[stored.value async for _, stored in context.regions.items()])
