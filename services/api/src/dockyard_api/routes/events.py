"""The live event feed (Server-Sent Events), resumable, and the event catalogue (AsyncAPI)."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard_api.auth import Caller
from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_common import DeploymentName, OwnerName, ProjectName, get_logger
from dockyard_common.catalogue import asyncapi_document
from dockyard_common.subjects import EVENT_SUBJECT_PREFIX, EVENTS_STREAM

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0


def _frame(message: Msg) -> bytes:
    """One SSE frame: the stream sequence is the event id a client resumes from."""
    sequence = message.metadata.sequence.stream
    event_type = message.subject.split(".", 5)[5]
    data = message.data.decode()
    return f"id: {sequence}\nevent: {event_type}\ndata: {data}\n\n".encode()


def _wanted(types: list[str], subject: str) -> bool:
    event_type = subject.split(".", 5)[5]
    return not types or any(fnmatch.fnmatchcase(event_type, pattern) for pattern in types)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "One SSE frame per event: id (stream sequence), event "
            "(type), data (the CloudEvent as JSON).",
        }
    },
)
async def events(
    caller: Caller,
    context: Annotated[ApiContext, Depends(get_context)],
    owner: Annotated[OwnerName | None, Query(description="Default: the token's owner.")] = None,
    project: Annotated[ProjectName | None, Query()] = None,
    deployment: Annotated[DeploymentName | None, Query()] = None,
    types: Annotated[str | None, Query(description="Comma-separated, wildcards: version.*")] = None,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, description="Resume after this id.")
    ] = None,
    since: Annotated[int | None, Query(ge=0, description="Resume after this id.")] = None,
) -> StreamingResponse:
    """Stream events as they happen; with ``Last-Event-ID``, first those after that id."""
    owner = owner or caller.owner
    if owner is None and not caller.is_platform_admin:  # pragma: no cover - owners have one
        raise Problem(422, "invalid-input", "give an owner")
    if owner is not None and not caller.sees(owner):
        raise Problem(404, "not-found", f"owner {owner!r} does not exist")
    if deployment is not None and project is None:
        raise Problem(422, "invalid-input", "a deployment filter needs its project")
    subject = ".".join([EVENT_SUBJECT_PREFIX, owner or "*", project or "*", deployment or "*", ">"])
    patterns = [t.strip() for t in (types or "").split(",") if t.strip()]
    resume = last_event_id if last_event_id is not None else since
    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=resume + 1)
        if resume is not None
        else ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    )
    subscription = await context.js.subscribe(
        subject, stream=EVENTS_STREAM, ordered_consumer=True, config=config
    )

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    message = await subscription.next_msg(timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if _wanted(patterns, message.subject):
                    yield _frame(message)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(subscription.unsubscribe())

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/asyncapi")
async def asyncapi(caller: Caller) -> dict[str, Any]:
    """The catalogue of every event type and its JSON schema, as AsyncAPI 3.0."""
    document: dict[str, Any] = json.loads(json.dumps(asyncapi_document("0.1.0")))
    return document
