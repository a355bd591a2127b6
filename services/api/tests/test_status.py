"""How build and rollout reports move a version's status (pure, idempotent)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dockyard_api.status import BuildNotRecordedYet, announcement, version_after_event
from dockyard_common import (
    CodeRef,
    EndpointSpec,
    EndpointState,
    EventType,
    ImageInfo,
    Version,
    VersionStatus,
    WorkloadState,
)

DIGEST = "sha256:" + "0" * 64
READY, DEPLOYING = WorkloadState.READY, WorkloadState.DEPLOYING
IMAGE = ImageInfo(reference="oci:/x:y", digest=DIGEST, layers=[], endpoints={"predict": DIGEST})


def a_version(status: VersionStatus = VersionStatus.PENDING, **changes: object) -> Version:
    return Version.model_validate(
        {
            "owner": "acme",
            "project": "demo",
            "deployment": "web",
            "name": "v1",
            "code": CodeRef(blob=DIGEST),
            "endpoints": [EndpointSpec(name="predict", wsgi="a:b")],
            "targets": ["local-eu", "local-us"],
            "status": status,
            **changes,
        }
    )


def state(target: str, workload: WorkloadState, reason: str | None = None) -> EndpointState:
    return EndpointState(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target=target,
        region=target[-2:],
        state=workload,
        upstreams=["http://127.0.1.1:1"] if workload is WorkloadState.READY else [],
        reason=reason,
    )


def test_a_build_moves_pending_to_building_to_built_with_the_image() -> None:
    building = version_after_event(a_version(), EventType.VERSION_BUILD_STARTED, a_version())
    assert building is not None and building.status is VersionStatus.BUILDING
    built = version_after_event(
        building, EventType.VERSION_BUILT, a_version(VersionStatus.BUILT, image=IMAGE)
    )
    assert built is not None and built.status is VersionStatus.BUILT and built.image == IMAGE


def test_a_failed_build_keeps_the_reason() -> None:
    failed = version_after_event(
        a_version(),
        EventType.VERSION_BUILD_FAILED,
        a_version(VersionStatus.FAILED, error="no such module"),
    )
    assert failed is not None and failed.error == "no such module"


def test_a_late_build_started_never_moves_a_built_version_back() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    assert version_after_event(built, EventType.VERSION_BUILD_STARTED, a_version()) is None


def test_ready_only_when_every_endpoint_is_ready_on_every_target() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    one = version_after_event(
        built, EventType.ENDPOINT_READY, state("local-eu", WorkloadState.READY)
    )
    assert one is not None and one.status is VersionStatus.DEPLOYING
    both = version_after_event(
        one, EventType.ENDPOINT_READY, state("local-us", WorkloadState.READY)
    )
    assert both is not None and both.status is VersionStatus.READY
    again = version_after_event(
        both, EventType.ENDPOINT_READY, state("local-us", WorkloadState.READY)
    )
    assert again is not None and again.status is VersionStatus.READY
    assert [s.target for s in again.endpoint_states] == ["local-eu", "local-us"]


def test_a_failed_endpoint_fails_the_version_with_its_reason() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    failed = version_after_event(
        built,
        EventType.ENDPOINT_FAILED,
        state("local-eu", WorkloadState.FAILED, "never opened port"),
    )
    assert failed is not None and failed.status is VersionStatus.FAILED
    assert failed.error == "never opened port"


def test_an_older_report_arriving_late_changes_nothing() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    newer = state("local-eu", WorkloadState.READY)
    older = state("local-eu", WorkloadState.DEPLOYING).model_copy(
        update={"observed_at": newer.observed_at - timedelta(seconds=1)}
    )
    ready = version_after_event(built, EventType.ENDPOINT_READY, newer)
    assert ready is not None
    assert version_after_event(ready, EventType.ENDPOINT_DEPLOYING, older) is None


def test_an_endpoint_report_before_the_build_is_recorded_is_retried_not_dropped() -> None:
    with pytest.raises(BuildNotRecordedYet):
        version_after_event(
            a_version(VersionStatus.BUILDING),
            EventType.ENDPOINT_READY,
            state("local-eu", WorkloadState.READY),
        )


def test_becoming_ready_everywhere_is_announced_and_so_is_losing_it() -> None:
    deploying = a_version(VersionStatus.BUILT, image=IMAGE)
    one = version_after_event(deploying, EventType.ENDPOINT_READY, state("local-eu", READY))
    assert one is not None and announcement(deploying, one) is None
    both = version_after_event(one, EventType.ENDPOINT_READY, state("local-us", READY))
    assert both is not None and announcement(one, both) == EventType.VERSION_READY
    crashed = version_after_event(
        both, EventType.ENDPOINT_DEPLOYING, state("local-us", DEPLOYING, "crash-looping")
    )
    assert crashed is not None and announcement(both, crashed) == EventType.VERSION_DEGRADED
    back = version_after_event(crashed, EventType.ENDPOINT_READY, state("local-us", READY))
    assert back is not None and announcement(crashed, back) == EventType.VERSION_READY
