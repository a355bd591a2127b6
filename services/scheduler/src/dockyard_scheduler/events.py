"""What the scheduler consumes and what it publishes: its whole face to the event stream.

Consumed (:data:`~dockyard_common.subscriptions.SCHEDULE_CONSUMER`, handled by
:class:`EventHandler`): the facts ``version.built`` and ``version.starting`` (run the
version's workloads on its targets) and ``version.stopping`` (remove them), each acted on in
the record's revision order.

Published (:class:`Reports`): reports, which the API folds into the record and makes the
facts of: each workload's observed state (``scheduler.endpoint.observed``; the API tells
``endpoint.ready`` from ``endpoint.scaled``), and ``scheduler.version.removed`` once a
stopping version's workloads are all gone.
"""

from __future__ import annotations

import nats.errors
from nats.aio.msg import Msg

from dockyard_common import (
    CloudEvent,
    EndpointState,
    EventType,
    TransientError,
    Version,
    get_logger,
)
from dockyard_common.runtime import EventPublisher
from dockyard_common.subjects import version_key
from dockyard_scheduler.reconcile import Reconciler

__all__ = ["EventHandler", "Reports"]

log = get_logger(__name__)


class Reports:
    """Publishes what the scheduler observes; :meth:`endpoint` is the drivers' ``Reporter``."""

    def __init__(self, events: EventPublisher) -> None:
        self._events = events

    async def endpoint(self, state: EndpointState) -> None:
        """Report a workload's observed state; :class:`~dockyard_common.TransientError` when
        NATS does not take it (the caller tries again)."""
        key = version_key(state.owner, state.project, state.deployment, state.version)
        workload_key = f"{key}/{state.endpoint}/{state.target}"
        try:
            await self._events.publish(
                EventType.SCHEDULER_ENDPOINT_OBSERVED,
                state,
                resource_key=workload_key,
                revision=f"{state.state.value}-{int(state.observed_at.timestamp() * 1e6)}",
            )
        except nats.errors.Error as exc:
            raise TransientError(f"the report of {workload_key} not published: {exc!r}") from exc

    async def version_removed(self, version: Version, key: str, revision: int) -> None:
        """Report that none of a stopping version's workloads runs any more."""
        await self._events.publish(
            EventType.SCHEDULER_VERSION_REMOVED, version, resource_key=key, revision=revision
        )
        log.info("version.removed", key=key)


class EventHandler:
    """Handles each fact the scheduler consumes by asking the reconciler."""

    def __init__(self, reconciler: Reconciler, reports: Reports) -> None:
        self._reconciler = reconciler
        self._reports = reports
        self._acted: dict[str, int] = {}
        """Per version key, the record revision of the last fact acted on: a fact about an
        older revision, delivered again or late, is about a state the record left."""

    async def on_event(self, event: CloudEvent, message: Msg) -> None:
        """Run, or stop, the version the fact is about, unless a later fact was acted on."""
        version = event.data_as(Version)
        key = version_key(version.owner, version.project, version.deployment, version.name)
        revision = int(event.resourcerevision or 0)
        async with self._reconciler.exclusive():
            if revision and revision <= self._acted.get(key, 0):
                log.info("fact.stale", key=key, type=event.type, revision=revision)
                return
            if event.type == EventType.VERSION_STOPPING:
                await self._reconciler.remove_version(version)
                await self._reports.version_removed(version, key, revision)
            else:
                targets = await self._reconciler.targets()
                await self._reconciler.apply(version, targets, report_unsupported=True)
            self._acted[key] = revision
