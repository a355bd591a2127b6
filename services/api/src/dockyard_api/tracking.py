"""The API's consumer of build and rollout reports: folds them into the state of record.

A version becoming ready everywhere, or ceasing to be, is announced with the write
(``version.ready``, ``version.degraded``), so the event can never be lost or doubled.
"""

from __future__ import annotations

from nats.aio.msg import Msg

from dockyard_api.context import ApiContext
from dockyard_api.status import TRACKED_EVENTS, announcement, version_after_event
from dockyard_common import (
    CloudEvent,
    Conflict,
    ConsumerSpec,
    EndpointState,
    Version,
    get_logger,
    run_consumer,
)
from dockyard_common.subjects import version_key

__all__ = ["STATUS_CONSUMER", "track_status"]

log = get_logger(__name__)

STATUS_CONSUMER = ConsumerSpec(durable="api-status", event_types=TRACKED_EVENTS)


async def track_status(context: ApiContext) -> None:
    """Run the status consumer until cancelled."""

    async def handle(event: CloudEvent, _: Msg) -> None:
        reported = event.parsed_data()
        if not isinstance(reported, Version | EndpointState):
            return
        name = reported.name if isinstance(reported, Version) else reported.version
        key = version_key(reported.owner, reported.project, reported.deployment, name)
        await _apply(context, key, event.type, reported)

    await run_consumer(context.js, STATUS_CONSUMER, handle)


async def _apply(
    context: ApiContext, key: str, event_type: str, reported: Version | EndpointState
) -> None:
    for _ in range(20):
        stored = await context.versions.get(key)
        if stored is None:
            log.warning("status.version.missing", key=key, event_type=event_type)
            return
        updated = version_after_event(stored.value, event_type, reported)
        if updated is None:
            return
        try:
            # version.ready / version.degraded go out through the relay, with the write.
            await context.versions.update(
                key, updated, stored.revision, announce=announcement(stored.value, updated)
            )
        except Conflict:
            continue
        log.info(
            "status.version.updated", key=key, event_type=event_type, status=updated.status.value
        )
        return
    raise Conflict(f"{key} kept changing while applying {event_type}")
