"""Following the event stream for a client: the live feed (``GET /v1/events``) and the
console's live pages read it the same way.

An ordered consumer on the subjects asked for, from a stream sequence or from now;
``None`` marks a quiet interval, for the caller to keep its connection alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard_common.subjects import EVENT_SUBJECT_PREFIX, EVENTS_STREAM

__all__ = ["event_subject", "event_type_of", "follow_events"]


def event_subject(owner: str | None, project: str | None, deployment: str | None) -> str:
    """The subjects of a scope's events (``None``: any)."""
    return ".".join([EVENT_SUBJECT_PREFIX, owner or "*", project or "*", deployment or "*", ">"])


def event_type_of(message: Msg) -> str:
    """The event type a message's subject names (``version.build.started``)."""
    return message.subject.split(".", 5)[5]


async def follow_events(
    js: JetStreamContext, subject: str, after: int | None, quiet_s: float
) -> AsyncIterator[Msg | None]:
    """The stream's messages on ``subject``, those after sequence ``after`` first (none of
    the past when ``after`` is None); ``None`` after every ``quiet_s`` without one.

    Subscribes before the first item is asked for, so that nothing published once this
    returns is missed."""
    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
        if after is not None
        else ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    )
    subscription = await js.subscribe(
        subject, stream=EVENTS_STREAM, ordered_consumer=True, config=config
    )

    async def messages() -> AsyncIterator[Msg | None]:
        try:
            while True:
                try:
                    yield await subscription.next_msg(timeout=quiet_s)
                except TimeoutError:
                    yield None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(subscription.unsubscribe())

    return messages()
