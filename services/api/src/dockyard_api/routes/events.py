"""The live event feed (Server-Sent Events), resumable, and the event catalogue (AsyncAPI)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from nats.aio.msg import Msg

from dockyard_api.auth import Caller
from dockyard_api.context import ApiContext, get_context
from dockyard_api.event_feed import event_subject, event_type_of, follow_events
from dockyard_api.problems import Problem
from dockyard_common import DeploymentName, OwnerName, ProjectName, get_logger
from dockyard_common.catalogue import asyncapi_document

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0


def _frame(message: Msg) -> bytes:
    """One SSE frame: the stream sequence is the event id a client resumes from."""
    sequence = message.metadata.sequence.stream
    event_type = event_type_of(message)
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
    subject = event_subject(owner, project, deployment)
    patterns = [t.strip() for t in (types or "").split(",") if t.strip()]
    resume = last_event_id if last_event_id is not None else since
    messages = await follow_events(context.js, subject, resume, KEEPALIVE_S)

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for message in messages:
            if message is None:
                yield b": keep-alive\n\n"
            elif _wanted(patterns, message.subject):
                yield _frame(message)

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
