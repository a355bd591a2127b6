"""The relay: every write that announces an event gets that event published, exactly once.

The API writes resources to JetStream KV with the event type the write stands for
(:class:`dockyard_common.Record`). The relay follows each bucket's stream with a durable
consumer and publishes the announced CloudEvents, ``Nats-Msg-Id`` from key and revision.
A process that dies between its write and the publish leaves the write unacknowledged in
the relay's consumer, so the event goes out when any API process runs again: no write is
ever stored without its event.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from dockyard_common import (
    EventPublisher,
    Record,
    TransientError,
    UnknownEventType,
    event_data,
    get_logger,
)
from dockyard_common.consumers import pull_messages
from dockyard_common.subjects import ALIASES_BUCKET, DEPLOYMENTS_BUCKET, VERSIONS_BUCKET

__all__ = ["RELAYED_BUCKETS", "relay_announcements"]

log = get_logger(__name__)

RELAYED_BUCKETS = (VERSIONS_BUCKET, DEPLOYMENTS_BUCKET, ALIASES_BUCKET)

_DELETIONS = ("DEL", "PURGE")


async def relay_announcements(js: JetStreamContext, publisher: EventPublisher) -> None:
    """Relay every announcing write of the relayed buckets, until cancelled."""
    async with asyncio.TaskGroup() as tasks:
        for bucket in RELAYED_BUCKETS:
            tasks.create_task(_relay_bucket(js, publisher, bucket))


async def _relay_bucket(js: JetStreamContext, publisher: EventPublisher, bucket: str) -> None:
    prefix = f"$KV.{bucket}."
    config = ConsumerConfig(
        durable_name=f"api-relay-{bucket}",
        name=f"api-relay-{bucket}",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=f"{prefix}>",
    )
    # One message at a time, retried in place: events about a key keep the order of its writes.
    async for message in pull_messages(js, f"KV_{bucket}", config):
        while True:
            try:
                await _publish_announcement(
                    publisher, message, message.subject.removeprefix(prefix)
                )
                break
            except (TransientError, nats.errors.Error) as exc:
                log.warning("relay.publish.retry", bucket=bucket, error=repr(exc))
                await asyncio.sleep(1.0)
            except (ValidationError, UnknownEventType) as exc:
                # Not ours to fix by retrying: say so and move on (the write itself stands).
                log.error(
                    "relay.record.unreadable",
                    bucket=bucket,
                    subject=message.subject,
                    error=str(exc),
                )
                break
        await message.ack()


async def _publish_announcement(publisher: EventPublisher, message: Msg, key: str) -> None:
    if (message.headers or {}).get("KV-Operation") in _DELETIONS:
        return
    if Record.announces_nothing(message.data):
        return
    record = Record.model_validate_json(message.data)
    if record.announce is None:
        return
    resource = event_data(record.announce).model_validate(record.resource)
    await publisher.publish(
        record.announce,
        resource,
        resource_key=key,
        revision=message.metadata.sequence.stream,
    )
