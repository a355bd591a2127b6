"""How build and rollout events move a version's status: pure decisions, no I/O.

The API is the only writer of the state of record; the builder and the scheduler report
through events, and :func:`version_after_event` folds each report into the version.
"""

from __future__ import annotations

from dockyard_common.errors import TransientError
from dockyard_common.events import EventType
from dockyard_common.models import EndpointState, Version, VersionStatus, WorkloadState, utcnow

__all__ = [
    "TRACKED_EVENTS",
    "BuildNotRecordedYet",
    "announcement",
    "overall_rollout_status",
    "version_after_event",
]

TRACKED_EVENTS = (
    EventType.VERSION_BUILD_STARTED,
    EventType.VERSION_STOPPED,
    EventType.ENDPOINT_STOPPED,
    EventType.VERSION_BUILT,
    EventType.VERSION_BUILD_FAILED,
    EventType.ENDPOINT_DEPLOYING,
    EventType.ENDPOINT_READY,
    EventType.ENDPOINT_FAILED,
    EventType.ENDPOINT_SCALED,
)

_BUILD_PHASE = (VersionStatus.PENDING, VersionStatus.BUILDING)
_STOP_PHASE = (VersionStatus.STOPPING, VersionStatus.STOPPED)
_ROLLOUT_PHASE = (
    VersionStatus.BUILT,
    VersionStatus.DEPLOYING,
    VersionStatus.READY,
    VersionStatus.FAILED,
)


def overall_rollout_status(version: Version, states: list[EndpointState]) -> VersionStatus:
    """``ready`` when every endpoint is ready on every target, ``failed`` when any failed."""
    by_place = {(s.endpoint, s.target): s.state for s in states}
    if any(state is WorkloadState.FAILED for state in by_place.values()):
        return VersionStatus.FAILED
    wanted = [(e.name, t) for e in version.endpoints for t in version.targets]
    if all(by_place.get(place) is WorkloadState.READY for place in wanted):
        return VersionStatus.READY
    return VersionStatus.DEPLOYING


class BuildNotRecordedYet(TransientError):
    """An endpoint report arrived before the version's build was recorded: retry it later."""


def _with_endpoint_state(version: Version, report: EndpointState) -> Version | None:
    if version.status in _BUILD_PHASE:
        raise BuildNotRecordedYet(
            f"{report.endpoint} on {report.target} reported before {version.name} was built",
            delay=0.5,
        )
    stopping = version.status in _STOP_PHASE
    if (version.status not in _ROLLOUT_PHASE and not stopping) or version.image is None:
        return None
    states = [
        s
        for s in version.endpoint_states
        if (s.endpoint, s.target) != (report.endpoint, report.target)
    ]
    previous = next(
        (
            s
            for s in version.endpoint_states
            if (s.endpoint, s.target) == (report.endpoint, report.target)
        ),
        None,
    )
    if previous is not None and previous.observed_at > report.observed_at:
        return None  # an older report arriving late changes nothing
    states.append(report)
    states.sort(key=lambda s: (s.endpoint, s.target))
    if stopping:  # reports of the stop itself; the version's status moves on version.stopped
        return version.model_copy(update={"endpoint_states": states, "updated_at": utcnow()})
    status = overall_rollout_status(version, states)
    error = report.reason if report.state is WorkloadState.FAILED else version.error
    return version.model_copy(
        update={"endpoint_states": states, "status": status, "error": error, "updated_at": utcnow()}
    )


def announcement(before: Version, after: Version) -> str | None:
    """The event a status change announces: ``version.ready`` on becoming ready,
    ``version.degraded`` when a ready version no longer is; None otherwise."""
    if after.status is VersionStatus.READY and before.status is not VersionStatus.READY:
        return EventType.VERSION_READY
    if before.status is VersionStatus.READY and after.status in (
        VersionStatus.DEPLOYING,
        VersionStatus.FAILED,
    ):
        return EventType.VERSION_DEGRADED
    return None


def version_after_event(
    version: Version, event_type: str, reported: Version | EndpointState
) -> Version | None:
    """The version once ``event_type`` is applied, or None when it changes nothing.

    Idempotent: applying the same event twice gives the same version as applying it once.
    Raises :class:`BuildNotRecordedYet` for an endpoint report that came too early.
    """
    if isinstance(reported, EndpointState):
        return _with_endpoint_state(version, reported)
    if event_type == EventType.VERSION_STOPPED and version.status is VersionStatus.STOPPING:
        return version.model_copy(update={"status": VersionStatus.STOPPED, "updated_at": utcnow()})
    if event_type == EventType.VERSION_BUILD_STARTED and version.status is VersionStatus.PENDING:
        return version.model_copy(update={"status": VersionStatus.BUILDING, "updated_at": utcnow()})
    if event_type == EventType.VERSION_BUILT and version.status in _BUILD_PHASE:
        return version.model_copy(
            update={
                "status": VersionStatus.BUILT,
                "image": reported.image,
                "error": None,
                "updated_at": utcnow(),
            }
        )
    if event_type == EventType.VERSION_BUILD_FAILED and version.status in _BUILD_PHASE:
        return version.model_copy(
            update={"status": VersionStatus.FAILED, "error": reported.error, "updated_at": utcnow()}
        )
    return None
