"""How the builder's and the scheduler's reports move a version: pure decisions, no I/O.

The API is the only writer of the state of record. The builder and the scheduler publish
*reports* (``builder.*``, ``scheduler.*``); :func:`fold_report` folds one into the version
and says which *facts* the write announces (``version.built``, ``endpoint.ready``,
``version.ready``, ...). The relay publishes those with the write's revision, so every
service acts on what the record holds, in the record's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard_common.events import EventType
from dockyard_common.models import EndpointState, Version, VersionStatus, WorkloadState, utcnow
from dockyard_common.records import Announcement

__all__ = [
    "Folded",
    "endpoint_fact",
    "fold_report",
    "overall_rollout_status",
    "version_fact",
]

_BUILD_PHASE = (VersionStatus.PENDING, VersionStatus.BUILDING)
_ROLLOUT_PHASE = (
    VersionStatus.BUILT,
    VersionStatus.DEPLOYING,
    VersionStatus.READY,
    VersionStatus.FAILED,
)
_STATE_FACTS = {
    WorkloadState.DEPLOYING: EventType.ENDPOINT_DEPLOYING,
    WorkloadState.READY: EventType.ENDPOINT_READY,
    WorkloadState.FAILED: EventType.ENDPOINT_FAILED,
    WorkloadState.STOPPED: EventType.ENDPOINT_STOPPED,
    WorkloadState.IDLE: EventType.ENDPOINT_SCALED,
}
_SERVING = (WorkloadState.READY, WorkloadState.IDLE)
"""An idle endpoint (scaled to zero) serves: its next request starts a replica."""


@dataclass(frozen=True)
class Folded:
    """A version with a report folded in, and the facts its write announces, in order."""

    version: Version
    announce: list[Announcement] = field(default_factory=list)


def overall_rollout_status(version: Version, states: list[EndpointState]) -> VersionStatus:
    """``ready`` when every endpoint is ready (or idle, scaled to zero) on every target,
    ``failed`` when any failed."""
    by_place = {(s.endpoint, s.target): s.state for s in states}
    if any(state is WorkloadState.FAILED for state in by_place.values()):
        return VersionStatus.FAILED
    wanted = [(e.name, t) for e in version.endpoints for t in version.targets]
    if all(by_place.get(place) in _SERVING for place in wanted):
        return VersionStatus.READY
    return VersionStatus.DEPLOYING


def endpoint_fact(previous: EndpointState | None, current: EndpointState) -> str | None:
    """The fact an endpoint report makes: ``endpoint.scaled`` when a ready endpoint's
    replica count (serving, or wanted by the autoscaler) changed, or it went to zero
    (``idle``) or back, the event of its state
    when anything else changed, None when the report says what the record already holds."""
    if previous is not None and _said(previous) == _said(current):
        return None
    if (
        previous is not None
        and previous.state in _SERVING
        and current.state in _SERVING
        and (
            len(previous.upstreams) != len(current.upstreams)
            or previous.desired_replicas != current.desired_replicas
            or previous.state is not current.state
        )
    ):
        return EventType.ENDPOINT_SCALED
    return _STATE_FACTS[current.state]


def _said(state: EndpointState) -> tuple[object, ...]:
    """What a report says of an endpoint, its time aside."""
    return (
        state.state,
        state.upstreams,
        state.reason,
        state.desired_replicas,
        state.scaled_because,
    )


def version_fact(before: Version, after: Version) -> str | None:
    """The fact a rollout change makes of the version: ``version.ready`` on becoming ready,
    ``version.degraded`` when a ready version no longer is; None otherwise."""
    if after.status is VersionStatus.READY and before.status is not VersionStatus.READY:
        return EventType.VERSION_READY
    if before.status is VersionStatus.READY and after.status in (
        VersionStatus.DEPLOYING,
        VersionStatus.FAILED,
    ):
        return EventType.VERSION_DEGRADED
    return None


def _with_endpoint_state(version: Version, report: EndpointState) -> Folded | None:
    if version.status in _BUILD_PHASE:
        return None  # the scheduler places only what the record holds as built
    if version.status is VersionStatus.STOPPED and report.state is not WorkloadState.STOPPED:
        return None  # a report from before the stop, come late: nothing runs any more
    place = (report.endpoint, report.target)
    previous = next((s for s in version.endpoint_states if (s.endpoint, s.target) == place), None)
    if previous is not None and previous.observed_at > report.observed_at:
        return None  # an older report arriving late changes nothing
    fact = endpoint_fact(previous, report)
    if fact is None:
        return None
    states = sorted(
        [s for s in version.endpoint_states if (s.endpoint, s.target) != place] + [report],
        key=lambda s: (s.endpoint, s.target),
    )
    announced = [Announcement(type=fact, endpoint=report.endpoint, target=report.target)]
    if version.status not in _ROLLOUT_PHASE:
        # Stopping or stopped: reports of the stop itself. The status moves on
        # scheduler.version.removed.
        updated = version.model_copy(update={"endpoint_states": states, "updated_at": utcnow()})
        return Folded(updated, announced)
    status = overall_rollout_status(version, states)
    error = report.reason if report.state is WorkloadState.FAILED else version.error
    updated = version.model_copy(
        update={"endpoint_states": states, "status": status, "error": error, "updated_at": utcnow()}
    )
    rolled = version_fact(version, updated)
    return Folded(updated, announced + ([Announcement(type=rolled)] if rolled else []))


def fold_report(
    version: Version, report_type: str, reported: Version | EndpointState
) -> Folded | None:
    """The version once the report is folded in, with the facts to announce; None when the
    report changes nothing (late, repeated, or about another phase).

    Idempotent: folding the same report twice gives what folding it once gave.
    """
    if isinstance(reported, EndpointState):
        return _with_endpoint_state(version, reported)
    now = utcnow()
    if report_type == EventType.SCHEDULER_VERSION_REMOVED:
        if version.status is not VersionStatus.STOPPING:
            return None
        stopped = version.model_copy(update={"status": VersionStatus.STOPPED, "updated_at": now})
        return Folded(stopped, [Announcement(type=EventType.VERSION_STOPPED)])
    if report_type == EventType.BUILDER_BUILD_STARTED:
        if version.status is not VersionStatus.PENDING:
            return None
        building = version.model_copy(update={"status": VersionStatus.BUILDING, "updated_at": now})
        return Folded(building, [Announcement(type=EventType.VERSION_BUILD_STARTED)])
    if version.status not in _BUILD_PHASE:
        return None  # a build's end, come late or twice: the record moved on
    if report_type == EventType.BUILDER_BUILD_SUCCEEDED:
        built = version.model_copy(
            update={
                "status": VersionStatus.BUILT,
                "image": reported.image,
                "error": None,
                "updated_at": now,
            }
        )
        return Folded(built, [Announcement(type=EventType.VERSION_BUILT)])
    if report_type == EventType.BUILDER_BUILD_FAILED:
        failed = version.model_copy(
            update={"status": VersionStatus.FAILED, "error": reported.error, "updated_at": now}
        )
        return Folded(failed, [Announcement(type=EventType.VERSION_BUILD_FAILED)])
    return None
