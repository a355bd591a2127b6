"""CloudEvents 1.0 envelopes and the catalogue of Dockyard event types.

An event is published in structured mode (the whole envelope as JSON) to the subject
:func:`dockyard_common.subjects.event_subject` names. Every event carries the full state
of the resource it speaks of, so a subscriber never needs to call back. Pure data, no I/O.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from dockyard_common.event_versions import dataschema_uri
from dockyard_common.models import (
    Alias,
    BuildProgress,
    Deployment,
    EndpointState,
    Version,
    utcnow,
)
from dockyard_common.platform_facts import Region, ServiceRestart
from dockyard_common.subjects import is_report
from dockyard_common.traffic import DeploymentTraffic

__all__ = [
    "EVENT_DATA",
    "REPORT_TYPES",
    "CloudEvent",
    "EventType",
    "UnknownEventType",
    "event_data",
    "make_event",
]


class EventType:
    """Event type names: dotted, past tense.

    Most are *facts*: the API announces them with the write of the state of record they
    speak of, carrying its revision. Those named for a service (``builder.*``,
    ``scheduler.*``) are *reports*: what that service did or observed, which the API alone
    folds into the record. ``version.build.progress`` is the builder's live progress, kept
    nowhere and acted on by nobody.
    """

    VERSION_CREATED = "version.created"
    VERSION_STOPPING = "version.stopping"
    VERSION_STOPPED = "version.stopped"
    VERSION_STARTING = "version.starting"
    """A stopped version is to run again: its endpoints are being started from its image."""
    VERSION_BUILD_STARTED = "version.build.started"
    VERSION_BUILD_PROGRESS = "version.build.progress"
    VERSION_BUILT = "version.built"
    VERSION_BUILD_FAILED = "version.build.failed"
    VERSION_READY = "version.ready"
    """Every endpoint of the version is ready on every target."""
    VERSION_DEGRADED = "version.degraded"
    """The version was ready; now an endpoint failed or is not ready somewhere."""
    ENDPOINT_DEPLOYING = "endpoint.deploying"
    ENDPOINT_READY = "endpoint.ready"
    ENDPOINT_FAILED = "endpoint.failed"
    ENDPOINT_STOPPED = "endpoint.stopped"
    ENDPOINT_SCALED = "endpoint.scaled"
    """A ready endpoint now serves from a different number of replicas (its upstreams)."""
    DEPLOYMENT_CHANGED = "deployment.changed"
    ALIAS_CHANGED = "alias.changed"
    PLATFORM_SERVICE_RESTARTED = "platform.service.restarted"
    """A process of the platform ended on its own; its supervisor started it again."""
    PLATFORM_REGION_DRAINED = "platform.region.drained"
    PLATFORM_REGION_UNDRAINED = "platform.region.undrained"

    BUILDER_BUILD_STARTED = "builder.build.started"
    """Report: the builder took the version up."""
    BUILDER_BUILD_SUCCEEDED = "builder.build.succeeded"
    """Report: the version's image is built and stored; ``image`` says where."""
    BUILDER_BUILD_FAILED = "builder.build.failed"
    """Report: the build failed for good; ``error`` says why."""
    SCHEDULER_ENDPOINT_OBSERVED = "scheduler.endpoint.observed"
    """Report: what an endpoint of a version is doing on a target now."""
    SCHEDULER_VERSION_REMOVED = "scheduler.version.removed"
    """Report: every workload of a stopping version is gone from every target."""
    ROUTER_TRAFFIC_OBSERVED = "router.traffic.observed"
    """What a router process served of a deployment over a second (the metrics feed)."""


EVENT_DATA: dict[str, type[BaseModel]] = {
    EventType.VERSION_CREATED: Version,
    EventType.VERSION_STOPPING: Version,
    EventType.VERSION_STOPPED: Version,
    EventType.VERSION_STARTING: Version,
    EventType.VERSION_BUILD_STARTED: Version,
    EventType.VERSION_BUILD_PROGRESS: BuildProgress,
    EventType.VERSION_BUILT: Version,
    EventType.VERSION_BUILD_FAILED: Version,
    EventType.VERSION_READY: Version,
    EventType.VERSION_DEGRADED: Version,
    EventType.ENDPOINT_DEPLOYING: EndpointState,
    EventType.ENDPOINT_READY: EndpointState,
    EventType.ENDPOINT_FAILED: EndpointState,
    EventType.ENDPOINT_STOPPED: EndpointState,
    EventType.ENDPOINT_SCALED: EndpointState,
    EventType.DEPLOYMENT_CHANGED: Deployment,
    EventType.ALIAS_CHANGED: Alias,
    EventType.PLATFORM_SERVICE_RESTARTED: ServiceRestart,
    EventType.PLATFORM_REGION_DRAINED: Region,
    EventType.PLATFORM_REGION_UNDRAINED: Region,
    EventType.BUILDER_BUILD_STARTED: Version,
    EventType.BUILDER_BUILD_SUCCEEDED: Version,
    EventType.BUILDER_BUILD_FAILED: Version,
    EventType.SCHEDULER_ENDPOINT_OBSERVED: EndpointState,
    EventType.SCHEDULER_VERSION_REMOVED: Version,
    EventType.ROUTER_TRAFFIC_OBSERVED: DeploymentTraffic,
}
"""Which resource each event type carries as its ``data``."""

REPORT_TYPES = frozenset(t for t in EVENT_DATA if is_report(t))
"""The event types that are reports (the API folds them; nobody else acts on them)."""


ModelT = TypeVar("ModelT", bound=BaseModel)


class UnknownEventType(ValueError):
    """An envelope names an event type this catalogue does not know."""


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in structured JSON mode."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(
        default=None,
        description="The schema version of data: urn:dockyard:event-schema:<type>:v<n>.",
    )
    resourcerevision: str | None = Field(
        default=None,
        description="Extension attribute: the state-of-record revision the event speaks of.",
    )
    data: dict[str, Any]

    def data_as(self, model: builtins.type[ModelT]) -> ModelT:
        """The ``data`` parsed as ``model``; pydantic's ValidationError if it does not fit."""
        return model.model_validate(self.data)

    def parsed_data(self) -> BaseModel:
        """The ``data`` parsed as the model the catalogue names for this event type."""
        return event_data(self.type).model_validate(self.data)


def event_data(event_type: str) -> type[BaseModel]:
    """The model an event type carries; :class:`UnknownEventType` if it is not catalogued."""
    try:
        return EVENT_DATA[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def make_event(
    event_type: str,
    *,
    data: BaseModel,
    event_id: str,
    source: str,
    subject: str | None = None,
    revision: int | str | None = None,
) -> CloudEvent:
    """Wrap a resource snapshot in an envelope, checking it is the type's catalogued model."""
    expected = event_data(event_type)
    if not isinstance(data, expected):
        raise TypeError(f"{event_type} carries {expected.__name__}, not {type(data).__name__}")
    return CloudEvent(
        id=event_id,
        source=source,
        type=event_type,
        subject=subject,
        resourcerevision=None if revision is None else str(revision),
        dataschema=dataschema_uri(event_type),
        data=data.model_dump(mode="json", by_alias=True),
    )
