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
from dockyard_api.draining import set_drained
from dockyard_api.listing import Page
from dockyard_api.preconditions import etag
from dockyard_common import TargetName
from dockyard_common.platform_facts import Region

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
    stored = await set_drained(context, region, body.drained)
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.get("")
async def list_regions(
    caller: Caller, context: Annotated[ApiContext, Depends(get_context)]
) -> Page[Region]:
    """Every region an operator has drained or undrained (others serve)."""
    return Page(items=[stored.value async for _, stored in context.regions.items()])
