"""The relay: every write that announces events gets those events published, exactly once.

The API writes resources to JetStream KV with the events the write stands for
(:class:`dockyard_common.Record`). The relay follows each bucket's stream with a durable
consumer and publishes the announced CloudEvents, ``Nats-Msg-Id`` from key, revision and
type. A process that dies between its write and the publish leaves the write
unacknowledged in the relay's consumer, so the events go out when any API process runs
again: no write is ever stored without its events.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError

from dockyard_common import (
    EndpointState,
    Record,
    TransientError,
    UnknownEventType,
    Version,
    Written,
    event_data,
    get_logger,
)
from dockyard_common.records import Announcement
from dockyard_common.runtime import EventPublisher
from dockyard_common.runtime.consumers import pull_messages
from dockyard_common.runtime.state import bucket_subjects, kv_write
from dockyard_common.subjects import (
    ALIASES_BUCKET,
    DEPLOYMENTS_BUCKET,
    REGIONS_BUCKET,
    VERSIONS_BUCKET,
)

__all__ = ["RELAYED_BUCKETS", "announced_events", "relay_announcements"]

log = get_logger(__name__)

RELAYED_BUCKETS = (VERSIONS_BUCKET, DEPLOYMENTS_BUCKET, ALIASES_BUCKET, REGIONS_BUCKET)


async def relay_announcements(js: JetStreamContext, publisher: EventPublisher) -> None:
    """Relay every announcing write of the relayed buckets, until cancelled."""
    async with asyncio.TaskGroup() as tasks:
        for bucket in RELAYED_BUCKETS:
            tasks.create_task(_relay_bucket(js, publisher, bucket))


async def _relay_bucket(js: JetStreamContext, publisher: EventPublisher, bucket: str) -> None:
    config = ConsumerConfig(
        durable_name=f"api-relay-{bucket}",
        name=f"api-relay-{bucket}",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=bucket_subjects(bucket),
    )
    # One message at a time, retried in place: events about a key keep the order of its writes.
    async for message in pull_messages(js, f"KV_{bucket}", config):
        write = kv_write(message)
        while True:
            try:
                await _publish_announced(publisher, write)
                break
            except (TransientError, nats.errors.Error) as exc:
                log.warning("relay.publish.retry", bucket=bucket, error=repr(exc))
                await asyncio.sleep(1.0)
            except (ValidationError, UnknownEventType, LookupError) as exc:
                # Not ours to fix by retrying: say so and move on (the write itself stands).
                log.error("relay.record.unreadable", bucket=bucket, key=write.key, error=str(exc))
                break
        await message.ack()


def announced_events(
    write: Written[bytes],
) -> list[tuple[str, BaseModel, str]]:
    """The events a write announces: (type, data, resource key) each, in order. Pure.

    An endpoint fact carries the endpoint's state from the version written, under the key
    ``<version key>/<endpoint>/<target>``. LookupError when a write names one it lacks."""
    if write.value is None or Record.announces_nothing(write.value):
        return []
    record = Record.model_validate_json(write.value)
    if not record.announce:
        return []
    events: list[tuple[str, BaseModel, str]] = []
    for announcement in record.announce:
        model = event_data(announcement.type)
        if model is EndpointState:
            version = Version.model_validate(record.resource)
            state = _endpoint_state(version, announcement)
            key = f"{write.key}/{announcement.endpoint}/{announcement.target}"
            events.append((announcement.type, state, key))
        else:
            events.append((announcement.type, model.model_validate(record.resource), write.key))
    return events


def _endpoint_state(version: Version, announcement: Announcement) -> EndpointState:
    for state in version.endpoint_states:
        if (state.endpoint, state.target) == (announcement.endpoint, announcement.target):
            return state
    raise LookupError(
        f"{announcement.type} names {announcement.endpoint} on {announcement.target}, "
        f"which version {version.name} holds no state of"
    )


async def _publish_announced(publisher: EventPublisher, write: Written[bytes]) -> None:
    for event_type, data, key in announced_events(write):
        await publisher.publish(event_type, data, resource_key=key, revision=write.revision)
