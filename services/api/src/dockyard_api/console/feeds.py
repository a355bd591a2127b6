"""What the console reads from the streams: a deployment's traffic reports of the last
hour (``DOCKYARD_TRAFFIC``) and a version's past events (for its build timings)."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from dockyard_common import get_logger, utcnow
from dockyard_common.subjects import EVENTS_STREAM, TRAFFIC_STREAM, traffic_subject
from dockyard_common.traffic import DeploymentTraffic

__all__ = ["past_events", "recent_traffic"]

log = get_logger(__name__)

MAX_MESSAGES = 20_000
"""The most messages one page reads: an hour of one report a second from five routers."""


async def _read(
    js: JetStreamContext, stream: str, subject: str, config: ConsumerConfig
) -> list[Msg]:
    """Every message on ``subject`` from where ``config`` starts up to the stream's end now."""
    subscription = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    messages: list[Msg] = []
    try:
        while len(messages) < MAX_MESSAGES:
            try:
                message = await subscription.next_msg(timeout=0.25)
            except TimeoutError:
                break  # nothing (more) to read
            messages.append(message)
            if message.metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return messages


async def recent_traffic(
    js: JetStreamContext, owner: str, project: str, deployment: str, span: timedelta
) -> list[DeploymentTraffic]:
    """The routers' reports on the deployment whose window ended in the last ``span``."""
    since: datetime = utcnow() - span
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
    )
    reports = []
    for message in await _read(
        js, TRAFFIC_STREAM, traffic_subject(owner, project, deployment), config
    ):
        try:
            reports.append(DeploymentTraffic.model_validate(json.loads(message.data)["data"]))
        except (ValueError, KeyError, TypeError, ValidationError):
            log.warning("console.traffic.unreadable", subject=message.subject)
    return reports


async def past_events(
    js: JetStreamContext, subject: str, since: datetime | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The events on ``subject`` the stream still holds (those stored since ``since`` when
    given), oldest first: (type, CloudEvent)."""
    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        if since is None
        else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    )
    events = []
    for message in await _read(js, EVENTS_STREAM, subject, config):
        try:
            events.append((message.subject.split(".", 5)[5], json.loads(message.data)))
        except (ValueError, IndexError):
            log.warning("console.event.unreadable", subject=message.subject)
    return events
