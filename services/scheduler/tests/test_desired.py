"""What each target should run and what a full pass removes: pure decisions, no I/O."""

from __future__ import annotations

import pytest

from dockyard_common import CodeRef, EndpointSpec, ImageInfo, Target, Version, VersionStatus
from dockyard_scheduler.desired import (
    RecordedVersion,
    desired_workloads,
    endpoint_prefix,
    workloads_to_remove,
)

DIGEST = "sha256:" + "0" * 64


def a_version(image: bool = True) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob=DIGEST),
        targets=["local-eu", "local-us", "mars"],
        endpoints=[
            EndpointSpec(name="predict", wsgi="app:app"),
            EndpointSpec(name="explain", wsgi="app:explain"),
        ],
        image=ImageInfo(
            reference="oci:/x:y",
            digest=DIGEST,
            layers=[],
            endpoints={"predict": "sha256:" + "1" * 64, "explain": "sha256:" + "2" * 64},
        )
        if image
        else None,
    )


TARGETS = {
    "local-eu": Target(name="local-eu", region="eu", address="127.0.1.1"),
    "local-us": Target(name="local-us", region="us", address="127.0.2.1"),
}


def test_every_endpoint_runs_on_every_known_target_with_its_own_image() -> None:
    workloads, missing = desired_workloads(a_version(), TARGETS)
    assert sorted(w.key for w in workloads) == [
        "acme.demo.web.v1/explain/local-eu",
        "acme.demo.web.v1/explain/local-us",
        "acme.demo.web.v1/predict/local-eu",
        "acme.demo.web.v1/predict/local-us",
    ]
    assert {w.manifest_digest for w in workloads if w.endpoint.name == "predict"} == {
        "sha256:" + "1" * 64
    }
    assert missing == ["mars"]


def test_a_version_without_an_image_needs_nothing_yet() -> None:
    assert desired_workloads(a_version(image=False), TARGETS) == ([], [])


def test_the_prefix_is_what_the_router_strips() -> None:
    assert endpoint_prefix(a_version(), "predict") == "/acme/demo/web/v1/predict"


# What the drivers run: two workloads of v1, one of v2, one of a version the record lacks.
RUNNING = {
    "acme.demo.web.v1/predict/local-eu",
    "acme.demo.web.v1/predict/local-us",
    "acme.demo.web.v2/predict/local-eu",
    "acme.demo.web.v10/predict/local-eu",
}


def recorded(status: VersionStatus, *applied: str, name: str = "v1") -> RecordedVersion:
    return RecordedVersion(f"acme.demo.web.{name}", status, frozenset(applied))


@pytest.mark.parametrize("status", [VersionStatus.STOPPING, VersionStatus.STOPPED])
def test_a_stopped_version_s_workloads_are_removed(status: VersionStatus) -> None:
    versions = [
        recorded(status),
        recorded(VersionStatus.READY, "acme.demo.web.v2/predict/local-eu", name="v2"),
    ]

    assert workloads_to_remove(versions, RUNNING) == [
        "acme.demo.web.v1/predict/local-eu",
        "acme.demo.web.v1/predict/local-us",
        "acme.demo.web.v10/predict/local-eu",
    ]


def test_a_deleted_version_s_workloads_are_removed_and_no_other_version_s() -> None:
    # v10 is absent from the record: it goes, though its key starts like v1's.
    versions = [
        recorded(VersionStatus.READY, *sorted(RUNNING)[:2]),
        recorded(VersionStatus.READY, "acme.demo.web.v2/predict/local-eu", name="v2"),
    ]

    assert workloads_to_remove(versions, RUNNING) == ["acme.demo.web.v10/predict/local-eu"]


@pytest.mark.parametrize("status", [VersionStatus.PENDING, VersionStatus.BUILDING])
def test_a_version_the_record_holds_unbuilt_keeps_nothing_it_runs(
    status: VersionStatus,
) -> None:
    # The scheduler runs only what the record holds as built: whatever of a pending or
    # building version runs is not wanted (nothing waits for the record to catch up).
    versions = [recorded(status), recorded(status, name="v2")]

    assert workloads_to_remove(versions, RUNNING) == sorted(RUNNING)


@pytest.mark.parametrize(
    "status",
    [VersionStatus.BUILT, VersionStatus.DEPLOYING, VersionStatus.READY, VersionStatus.FAILED],
)
def test_a_runnable_version_keeps_only_the_workloads_the_pass_applied(
    status: VersionStatus,
) -> None:
    # local-us no longer reached (its target was deleted, or its apply failed this pass).
    versions = [
        recorded(status, "acme.demo.web.v1/predict/local-eu"),
        recorded(status, "acme.demo.web.v2/predict/local-eu", name="v2"),
        recorded(status, "acme.demo.web.v10/predict/local-eu", name="v10"),
    ]

    assert workloads_to_remove(versions, RUNNING) == ["acme.demo.web.v1/predict/local-us"]


def test_nothing_running_means_nothing_to_remove() -> None:
    assert workloads_to_remove([recorded(VersionStatus.STOPPED)], set()) == []
