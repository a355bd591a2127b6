"""The one NATS connection helper, JetStream provisioning and the one event publisher."""

from __future__ import annotations

import asyncio
import dataclasses

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from pydantic import BaseModel

from dockyard_common.errors import TransientError
from dockyard_common.events import CloudEvent, make_event
from dockyard_common.log import get_logger
from dockyard_common.subjects import (
    BLOB_BUCKET,
    EVENT_SUBJECT_PREFIX,
    EVENTS_STREAM,
    KV_BUCKETS,
    PLATFORM_SUBJECT_PREFIX,
    REPORT_SUBJECT_PREFIX,
    TRAFFIC_EVENT_TYPE,
    TRAFFIC_STREAM,
    TRAFFIC_SUBJECT_PREFIX,
    WEBHOOK_DELIVERIES_STREAM,
    WEBHOOK_DELIVERY_PREFIX,
    WEBHOOK_LOG_PREFIX,
    WEBHOOK_LOG_STREAM,
    event_subject,
    is_platform_event,
    is_report,
    message_id,
    platform_event_subject,
    report_subject,
    traffic_subject,
)

__all__ = ["EventPublisher", "connect_nats", "provision_jetstream"]

log = get_logger(__name__)

DUPLICATE_WINDOW_S = 120.0
EVENT_RETENTION_S = 7 * 24 * 3600.0
WEBHOOK_QUEUE_RETENTION_S = 3 * 24 * 3600.0
"""Longer than the 24 h a delivery is retried, so a queued delivery never ages out first."""
WEBHOOK_LOG_PER_SUBSCRIPTION = 1000
WEBHOOK_LOG_RETENTION_S = 30 * 24 * 3600.0
TRAFFIC_RETENTION_S = 24 * 3600.0
TRAFFIC_MAX_BYTES = 1024**3
"""The request metrics feed keeps a day, and never more than this on disk."""


async def connect_nats(url: str, *, name: str, connect_timeout: float = 5.0) -> NatsClient:
    """Connect to NATS, reconnecting forever once connected; TransientError if unreachable."""
    try:
        return await nats.connect(
            url,
            name=name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
    except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
        raise TransientError(f"NATS at {url} is unreachable: {exc}") from exc


_STREAM_CONFIG_DIFFERS = 10058
"""JetStream's error code for a stream that exists with another configuration."""


async def _provision_bucket(js: JetStreamContext, bucket: str) -> None:
    """A KV bucket answering reads with direct gets: answered as the stored message itself
    (no JSON envelope, base64 or header re-parsing in the client), which took a sixth off
    the API's and nats-server's CPU per alias switch. Buckets have one replica: a direct get
    reads what the last write stored, which the alias/stop ordering relies on.

    A bucket an earlier release made has direct gets turned on, nothing else changed; every
    service provisions at start, so another may be doing the same at that moment. (An
    earlier release then no longer starts on it: its provisioning asks for the old config.)
    """
    config = KeyValueConfig(bucket=bucket, history=16, storage=StorageType.FILE, direct=True)
    try:
        await js.create_key_value(config)
        return
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _STREAM_CONFIG_DIFFERS:
            raise
    info = await js.stream_info(f"KV_{bucket}")
    if not info.config.allow_direct:
        await js.update_stream(dataclasses.replace(info.config, allow_direct=True))
    # Now the same configuration, whoever switched it (or one that differs in more than
    # direct gets, and this raises).
    await js.create_key_value(config)


async def provision_jetstream(js: JetStreamContext) -> None:
    """Create the streams (events, webhook queue and log), KV buckets and blob store."""
    streams = (
        StreamConfig(
            name=EVENTS_STREAM,
            # Deployments' facts, the services' reports, and the platform's own events.
            subjects=[
                f"{EVENT_SUBJECT_PREFIX}.>",
                f"{REPORT_SUBJECT_PREFIX}.>",
                f"{PLATFORM_SUBJECT_PREFIX}.>",
            ],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=EVENT_RETENTION_S,
        ),
        StreamConfig(
            name=TRAFFIC_STREAM,
            subjects=[f"{TRAFFIC_SUBJECT_PREFIX}.>"],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=TRAFFIC_RETENTION_S,
            max_bytes=TRAFFIC_MAX_BYTES,
        ),
        StreamConfig(
            name=WEBHOOK_DELIVERIES_STREAM,
            subjects=[f"{WEBHOOK_DELIVERY_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_age=WEBHOOK_QUEUE_RETENTION_S,
        ),
        StreamConfig(
            name=WEBHOOK_LOG_STREAM,
            subjects=[f"{WEBHOOK_LOG_PREFIX}.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=WEBHOOK_LOG_PER_SUBSCRIPTION,
            max_age=WEBHOOK_LOG_RETENTION_S,
        ),
    )
    for stream in streams:
        try:
            await js.add_stream(stream)
        except nats.js.errors.BadRequestError:
            # Exists with another configuration (an older release): bring it up to date.
            await js.update_stream(stream)
    for bucket in KV_BUCKETS:
        await _provision_bucket(js, bucket)
    await js.create_object_store(BLOB_BUCKET, ObjectStoreConfig(storage=StorageType.FILE))


def _subject_of(event_type: str, data: BaseModel) -> str:
    """Where an event goes: a platform event under the platform's subject, a report under
    the reports' and a fact under the facts' prefix of its resource's owner, project and
    deployment (every other event data model has them)."""
    if is_platform_event(event_type):
        return platform_event_subject(event_type)
    scope = getattr(data, "scope", None)
    if scope is None:
        raise TypeError(f"{type(data).__name__} has no scope to publish its events under")
    owner, project, deployment = (str(part) for part in scope)
    if event_type == TRAFFIC_EVENT_TYPE:
        return traffic_subject(owner, project, deployment)
    if is_report(event_type):
        return report_subject(owner, project, deployment, event_type)
    return event_subject(owner, project, deployment, event_type)


class EventPublisher:
    """Publishes CloudEvents to the event stream with the msg-id rule; retries a lost ack."""

    def __init__(self, js: JetStreamContext, *, source: str, attempts: int = 5) -> None:
        self._js = js
        self._source = source
        self._attempts = attempts

    async def publish(
        self,
        event_type: str,
        data: BaseModel,
        *,
        resource_key: str,
        revision: int | str,
    ) -> CloudEvent:
        """Publish ``data`` as an ``event_type`` event under its resource's owner, project
        and deployment (its ``scope``), or a platform event under the platform's subject;
        the same key and revision publish once.

        A publish whose ack is lost may still have been stored, so it is retried with the
        same ``Nats-Msg-Id`` and JetStream drops the duplicate.
        """
        event_id = message_id(event_type, resource_key, revision)
        event = make_event(
            event_type,
            data=data,
            event_id=event_id,
            source=self._source,
            subject=resource_key,
            revision=revision,
        )
        subject = _subject_of(event_type, data)
        payload = event.model_dump_json().encode()
        delay = 0.1
        for attempt in range(1, self._attempts + 1):
            try:
                await self._js.publish(
                    subject,
                    payload,
                    stream=TRAFFIC_STREAM if event_type == TRAFFIC_EVENT_TYPE else EVENTS_STREAM,
                    headers={"Nats-Msg-Id": event_id},
                    timeout=2.0,
                )
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                if attempt == self._attempts:
                    raise TransientError(f"event {event_id} not acknowledged: {exc}") from exc
                log.warning("event.publish.retry", event_id=event_id, attempt=attempt)
                await asyncio.sleep(delay)
                delay *= 2
            else:
                log.debug("event.published", event_id=event_id, subject=subject)
                return event
        raise AssertionError("unreachable")  # pragma: no cover
