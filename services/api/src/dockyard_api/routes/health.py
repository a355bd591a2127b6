"""Liveness (the process answers) and readiness (NATS reachable, streams present)."""

from __future__ import annotations

from typing import Annotated

import nats.errors
import nats.js.errors
from fastapi import APIRouter, Depends

from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_common.subjects import EVENTS_STREAM

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, str]:
    """NATS answers and the event stream exists; 503 otherwise."""
    try:
        await context.js.stream_info(EVENTS_STREAM)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        raise Problem(503, "not-ready", f"NATS or the event stream is unavailable: {exc}") from exc
    return {"status": "ready"}
