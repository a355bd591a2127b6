"""A console page's live feed (Server-Sent Events, same origin, by session cookie): each
event of the deployment as a timeline line; the page's script adds it and fetches the
parts of the page the event changed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from dockyard_api.auth import principal_for_hash
from dockyard_api.console.pages import may_view
from dockyard_api.console.rendering import ConsoleRoute
from dockyard_api.console.security import Session, SignedIn
from dockyard_api.console.views import timeline_entry
from dockyard_api.context import ApiContext, get_context
from dockyard_api.event_feed import event_subject, event_type_of, follow_events
from dockyard_common import DeploymentName, OwnerName, ProjectName

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

KEEPALIVE_S = 15.0


async def still_signed_in(context: ApiContext, session: Session) -> bool:
    """Whether the session still stands and its token is still valid."""
    held = await context.console_sessions.find(session.id)
    return held is not None and await principal_for_hash(context, held.token_hash) is not None


@router.get("/d/{owner}/{project}/{deployment}/events")
async def deployment_events(
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    session: SignedIn,
    context: Annotated[ApiContext, Depends(get_context)],
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> StreamingResponse:
    """The deployment's events from sequence ``after`` (the page's), or after the last one
    the browser saw when it reconnects."""
    may_view(session.principal, owner, project, deployment)
    resume = last_event_id if last_event_id is not None else after
    messages = await follow_events(
        context.js, event_subject(owner, project, deployment), resume, KEEPALIVE_S
    )

    async def frames() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for message in messages:
            if message is None:
                # A session signed out, or a token revoked, ends its live feed too.
                if not await still_signed_in(context, session):
                    return
                yield b": keep-alive\n\n"
                continue
            sequence = message.metadata.sequence.stream
            try:
                event = json.loads(message.data)
            except ValueError:
                continue
            entry = timeline_entry(sequence, event_type_of(message), event)
            yield f"id: {sequence}\nevent: change\ndata: {json.dumps(asdict(entry))}\n\n".encode()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
