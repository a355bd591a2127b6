"""What the scheduler consumes and what it publishes: its whole face to the event stream.

Consumed (:data:`SCHEDULE_CONSUMER`, handled by :class:`EventHandler`): ``version.built`` and
``version.starting`` (run the version's workloads on its targets), ``version.stopping``
(remove them, then announce ``version.stopped``).

Published (:class:`Reports`): each workload's observed state as ``endpoint.deploying``,
``endpoint.ready``, ``endpoint.scaled``, ``endpoint.failed`` or ``endpoint.stopped``
(:func:`event_type` decides which), and ``version.stopped``.
"""

from __future__ import annotations

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_common import (
    CloudEvent,
    ConsumerSpec,
    EndpointState,
    EventPublisher,
    EventType,
    ResourceStore,
    TransientError,
    Version,
    VersionStatus,
    WorkloadState,
    get_logger,
)
from dockyard_common.subjects import VERSIONS_BUCKET, version_key
from dockyard_scheduler.desired import STOPPED
from dockyard_scheduler.reconcile import Reconciler

__all__ = ["SCHEDULE_CONSUMER", "EventHandler", "Reports", "event_type"]

log = get_logger(__name__)

SCHEDULE_CONSUMER = ConsumerSpec(
    durable="scheduler",
    # version.starting: a stopped version is to run again, as after its build.
    event_types=[EventType.VERSION_BUILT, EventType.VERSION_STOPPING, EventType.VERSION_STARTING],
)

_STATE_EVENTS = {
    WorkloadState.DEPLOYING: EventType.ENDPOINT_DEPLOYING,
    WorkloadState.READY: EventType.ENDPOINT_READY,
    WorkloadState.FAILED: EventType.ENDPOINT_FAILED,
    WorkloadState.STOPPED: EventType.ENDPOINT_STOPPED,
}


def event_type(previous: EndpointState | None, current: EndpointState) -> str:
    """The event a report is: ``endpoint.scaled`` when a ready endpoint's replica count
    changed, else the event of its state (pure, no I/O)."""
    if (
        previous is not None
        and previous.state is WorkloadState.READY
        and current.state is WorkloadState.READY
        and len(previous.upstreams) != len(current.upstreams)
    ):
        return EventType.ENDPOINT_SCALED
    return _STATE_EVENTS[current.state]


class Reports:
    """Publishes what the scheduler observes; :meth:`endpoint` is the drivers' ``Reporter``."""

    def __init__(self, events: EventPublisher) -> None:
        self._events = events
        self._reported: dict[str, EndpointState] = {}
        """The last state reported per workload key (to tell ``endpoint.scaled`` apart)."""

    async def endpoint(self, state: EndpointState) -> None:
        """Publish a workload's observed state; :class:`~dockyard_common.TransientError` when
        NATS does not take it (the caller tries again)."""
        key = version_key(state.owner, state.project, state.deployment, state.version)
        workload_key = f"{key}/{state.endpoint}/{state.target}"
        kind = event_type(self._reported.get(workload_key), state)
        try:
            await self._events.publish(
                kind,
                state,
                resource_key=workload_key,
                revision=f"{state.state.value}-{int(state.observed_at.timestamp() * 1e6)}",
            )
        except nats.errors.Error as exc:
            raise TransientError(f"{kind} of {workload_key} not published: {exc!r}") from exc
        if state.state is WorkloadState.STOPPED:
            self._reported.pop(workload_key, None)
        else:
            self._reported[workload_key] = state

    async def version_stopped(self, version: Version, key: str, revision: str) -> None:
        """Announce that none of the version's workloads runs any more."""
        stopped = version.model_copy(update={"status": VersionStatus.STOPPED})
        await self._events.publish(
            EventType.VERSION_STOPPED, stopped, resource_key=key, revision=revision
        )
        log.info("version.stopped", key=key)


class EventHandler:
    """Handles each event of :data:`SCHEDULE_CONSUMER` by asking the reconciler."""

    def __init__(self, js: JetStreamContext, reconciler: Reconciler, reports: Reports) -> None:
        self._js = js
        self._reconciler = reconciler
        self._reports = reports

    async def on_event(self, event: CloudEvent, message: Msg) -> None:
        """Run, or stop, the version the event is about."""
        version = event.data_as(Version)
        key = version_key(version.owner, version.project, version.deployment, version.name)
        async with self._reconciler.exclusive():
            if event.type == EventType.VERSION_STOPPING:
                await self._stop(version, key, event.resourcerevision or "0")
                return
            versions = await ResourceStore.open(self._js, VERSIONS_BUCKET, Version)
            current = await versions.get(key)
            if current is not None and current.value.status in STOPPED:
                return  # stopped while it was building (or again since its start)
            targets = await self._reconciler.targets()
            await self._reconciler.apply(version, targets, report_unsupported=True)

    async def _stop(self, version: Version, key: str, revision: str) -> None:
        """Remove every workload of the version, then report it stopped."""
        await self._reconciler.remove_version(version)
        await self._reports.version_stopped(version, key, revision)
