"""How the builder's and the scheduler's reports move a version, and which facts each makes
(pure, idempotent)."""

from __future__ import annotations

from datetime import timedelta

from dockyard_api.status import Folded, fold_report
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

OBSERVED = EventType.SCHEDULER_ENDPOINT_OBSERVED
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


def facts(folded: Folded | None) -> list[tuple[str, str | None]]:
    assert folded is not None, "the report changed nothing"
    return [(a.type, a.target) for a in folded.announce]


def observe(version: Version, report: EndpointState) -> Folded:
    folded = fold_report(version, OBSERVED, report)
    assert folded is not None, f"{report.state} on {report.target} changed nothing"
    return folded


def test_a_build_moves_pending_to_building_to_built_announcing_each_step() -> None:
    building = fold_report(a_version(), EventType.BUILDER_BUILD_STARTED, a_version())
    assert facts(building) == [(EventType.VERSION_BUILD_STARTED, None)]
    assert building is not None and building.version.status is VersionStatus.BUILDING
    built = fold_report(
        building.version,
        EventType.BUILDER_BUILD_SUCCEEDED,
        a_version(VersionStatus.BUILT, image=IMAGE),
    )
    assert facts(built) == [(EventType.VERSION_BUILT, None)]
    assert built is not None and built.version.image == IMAGE
    assert built.version.status is VersionStatus.BUILT


def test_a_failed_build_keeps_the_reason() -> None:
    failed = fold_report(
        a_version(),
        EventType.BUILDER_BUILD_FAILED,
        a_version(VersionStatus.FAILED, error="no such module"),
    )
    assert facts(failed) == [(EventType.VERSION_BUILD_FAILED, None)]
    assert failed is not None and failed.version.error == "no such module"


def test_a_late_or_repeated_build_report_never_moves_a_built_version_back() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    assert fold_report(built, EventType.BUILDER_BUILD_STARTED, a_version()) is None
    assert fold_report(built, EventType.BUILDER_BUILD_SUCCEEDED, built) is None
    failed = a_version(VersionStatus.FAILED, error="x")
    assert fold_report(built, EventType.BUILDER_BUILD_FAILED, failed) is None


def test_ready_only_when_every_endpoint_is_ready_on_every_target() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    one = observe(built, state("local-eu", READY))
    assert one.version.status is VersionStatus.DEPLOYING
    assert facts(one) == [(EventType.ENDPOINT_READY, "local-eu")]
    both = observe(one.version, state("local-us", READY))
    assert both.version.status is VersionStatus.READY
    assert facts(both) == [(EventType.ENDPOINT_READY, "local-us"), (EventType.VERSION_READY, None)]
    assert [s.target for s in both.version.endpoint_states] == ["local-eu", "local-us"]


def test_a_report_saying_what_the_record_holds_changes_nothing() -> None:
    ready = observe(a_version(VersionStatus.BUILT, image=IMAGE), state("local-eu", READY))
    assert fold_report(ready.version, OBSERVED, state("local-eu", READY)) is None


def test_a_ready_endpoint_with_another_replica_count_is_scaled() -> None:
    ready = observe(a_version(VersionStatus.BUILT, image=IMAGE), state("local-eu", READY))
    two = state("local-eu", READY).model_copy(
        update={"upstreams": ["http://127.0.1.1:1", "http://127.0.1.1:2"]}
    )
    assert facts(observe(ready.version, two)) == [(EventType.ENDPOINT_SCALED, "local-eu")]


def test_a_failed_endpoint_fails_the_version_with_its_reason() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    failed = observe(built, state("local-eu", WorkloadState.FAILED, "never opened port"))
    assert failed.version.status is VersionStatus.FAILED
    assert failed.version.error == "never opened port"
    assert facts(failed) == [(EventType.ENDPOINT_FAILED, "local-eu")]


def test_an_older_report_arriving_late_changes_nothing() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    newer = state("local-eu", WorkloadState.READY)
    older = state("local-eu", WorkloadState.DEPLOYING).model_copy(
        update={"observed_at": newer.observed_at - timedelta(seconds=1)}
    )
    ready = observe(built, newer)
    assert fold_report(ready.version, OBSERVED, older) is None


def test_an_endpoint_report_about_a_version_the_record_holds_unbuilt_changes_nothing() -> None:
    # The scheduler places only what the record holds as built: such a report is not about
    # this life of the version, and nothing waits for the build to be recorded any more.
    for status in (VersionStatus.PENDING, VersionStatus.BUILDING):
        assert fold_report(a_version(status), OBSERVED, state("local-eu", READY)) is None


def test_becoming_ready_everywhere_is_announced_and_so_is_losing_it() -> None:
    one = observe(a_version(VersionStatus.BUILT, image=IMAGE), state("local-eu", READY))
    both = observe(one.version, state("local-us", READY))
    assert (EventType.VERSION_READY, None) in facts(both)
    crashed = observe(both.version, state("local-us", DEPLOYING, "crash-looping"))
    assert facts(crashed) == [
        (EventType.ENDPOINT_DEPLOYING, "local-us"),
        (EventType.VERSION_DEGRADED, None),
    ]
    back = observe(crashed.version, state("local-us", READY))
    assert (EventType.VERSION_READY, None) in facts(back)


def test_a_stop_is_announced_once_every_workload_is_reported_removed() -> None:
    ready = observe(a_version(VersionStatus.BUILT, image=IMAGE), state("local-eu", READY))
    stopping = ready.version.model_copy(update={"status": VersionStatus.STOPPING})
    gone = observe(stopping, state("local-eu", WorkloadState.STOPPED))
    assert gone.version.status is VersionStatus.STOPPING  # the stop itself moves on removal
    assert facts(gone) == [(EventType.ENDPOINT_STOPPED, "local-eu")]
    stopped = fold_report(gone.version, EventType.SCHEDULER_VERSION_REMOVED, gone.version)
    assert facts(stopped) == [(EventType.VERSION_STOPPED, None)]
    assert stopped is not None and stopped.version.status is VersionStatus.STOPPED
    late_ready = state("local-eu", READY)
    assert fold_report(stopped.version, OBSERVED, late_ready) is None
    assert fold_report(stopped.version, EventType.SCHEDULER_VERSION_REMOVED, gone.version) is None


def test_the_autoscaler_wanting_another_count_is_scaled_and_kept_with_its_reason() -> None:
    ready = observe(a_version(VersionStatus.BUILT, image=IMAGE), state("local-eu", READY))
    wanted = state("local-eu", READY).model_copy(
        update={"desired_replicas": 3, "scaled_because": "load"}
    )
    folded = observe(ready.version, wanted)
    assert facts(folded) == [(EventType.ENDPOINT_SCALED, "local-eu")]
    [held] = folded.version.endpoint_states
    assert (held.desired_replicas, held.scaled_because) == (3, "load")
    assert fold_report(folded.version, OBSERVED, wanted) is None


def test_an_endpoint_gone_idle_is_scaled_and_its_version_stays_ready() -> None:
    built = a_version(VersionStatus.BUILT, image=IMAGE)
    ready = observe(observe(built, state("local-eu", READY)).version, state("local-us", READY))
    idle = state("local-eu", WorkloadState.IDLE).model_copy(
        update={"upstreams": [], "desired_replicas": 0, "scaled_because": "idle"}
    )
    folded = observe(ready.version, idle)
    assert facts(folded) == [(EventType.ENDPOINT_SCALED, "local-eu")]
    assert folded.version.status is VersionStatus.READY
    woken = observe(folded.version, state("local-eu", READY))
    assert facts(woken) == [(EventType.ENDPOINT_SCALED, "local-eu")]
