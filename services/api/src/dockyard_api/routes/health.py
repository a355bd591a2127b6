"""Liveness (the process answers), its readiness (NATS reachable, streams present), and the
platform's readiness as a whole (that, a router serving, the targets registered)."""

from __future__ import annotations

from typing import Annotated

import nats.errors
import nats.js.errors
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_api.readiness import PlatformReadiness, platform_readiness
from dockyard_common import TransientError
from dockyard_common.subjects import EVENTS_STREAM

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, str]:
    """This API process can serve: NATS answers and the event stream exists; 503 otherwise."""
    problem = await _api_problem(context)
    if problem is not None:
        raise Problem(503, "not-ready", problem)
    return {"status": "ready"}


@router.get(
    "/readyz/platform",
    response_model=PlatformReadiness,
    responses={503: {"model": PlatformReadiness, "description": "A part is not ready yet"}},
)
async def platform_ready(
    context: Annotated[ApiContext, Depends(get_context)],
) -> JSONResponse:
    """The platform as a whole: 200 once the API serves, a router process serves and the
    targets are registered; 503 until then. Either way the body lists each part."""
    problem = await _api_problem(context)
    targets: list[str] = []
    if problem is None:
        try:
            targets = [key async for key, _ in context.targets.items()]
        except TransientError as exc:
            problem = f"the targets cannot be read: {exc}"
    readiness = platform_readiness(
        instance_id=context.settings.instance_id or "",
        api_problem=problem,
        routers=context.routers.live(),
        targets=targets,
        expected_targets=context.settings.ready_targets,
    )
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


async def _api_problem(context: ApiContext) -> str | None:
    """Why this process cannot serve (NATS away, the event stream missing), or None."""
    try:
        await context.js.stream_info(EVENTS_STREAM)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        return f"NATS or the event stream is unavailable: {exc}"
    return None
