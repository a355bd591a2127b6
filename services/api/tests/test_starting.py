"""Starting a stopped version again: what the start writes, when there is nothing to start,
and the grace retention gives a started version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard_api.alias_rules import stopped_versions
from dockyard_api.retention import RetentionPolicy, versions_to_stop
from dockyard_api.version_rules import NeverBuilt, version_started
from dockyard_common import (
    AliasTarget,
    CodeRef,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    LayerInfo,
    Version,
    VersionStatus,
    WorkloadState,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IMAGE = ImageInfo(
    reference="oci:/images:acme/demo/web:v1",
    digest="sha256:" + "1" * 64,
    endpoints={"predict": "sha256:" + "3" * 64},
    layers=[LayerInfo(digest="sha256:" + "2" * 64, size=10, media_type="x", role="code")],
)


def version(name: str, status: VersionStatus, *, image: ImageInfo | None = IMAGE) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        status=status,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="a:b")],
        targets=["local-eu"],
        image=image,
        endpoint_states=[
            EndpointState(
                owner="acme",
                project="demo",
                deployment="web",
                version=name,
                endpoint="predict",
                target="local-eu",
                region="eu",
                state=WorkloadState.STOPPED,
            )
        ],
        created_at=T0,
    )


@pytest.mark.parametrize("status", [VersionStatus.STOPPED, VersionStatus.STOPPING])
def test_a_stopped_version_goes_back_to_built_with_its_image(status: VersionStatus) -> None:
    now = T0 + timedelta(days=2)
    started = version_started(version("v1", status), now)
    assert started is not None
    assert started.status is VersionStatus.BUILT  # where the scheduler takes over
    assert started.image == IMAGE
    assert started.endpoint_states == []  # they said stopped; the rollout reports anew
    assert started.started_at == now and started.created_at == T0


@pytest.mark.parametrize(
    "status", [s for s in VersionStatus if s not in (VersionStatus.STOPPED, VersionStatus.STOPPING)]
)
def test_a_version_that_is_not_stopped_has_nothing_to_start(status: VersionStatus) -> None:
    assert version_started(version("v1", status), T0) is None


def test_a_version_stopped_before_its_build_finished_cannot_start() -> None:
    with pytest.raises(NeverBuilt, match="no image"):
        version_started(version("v1", VersionStatus.STOPPED, image=None), T0)


def test_a_started_version_gets_its_grace_again() -> None:
    policy = RetentionPolicy(keep_changes=1, grace=timedelta(hours=1))
    old = version("v1", VersionStatus.READY).model_copy(update={"endpoint_states": []})
    newest = version("v2", VersionStatus.READY).model_copy(
        update={"created_at": T0 + timedelta(minutes=1)}
    )
    a_day_later = T0 + timedelta(days=1)
    assert versions_to_stop([old, newest], [], policy, a_day_later) == [old]
    started = old.model_copy(update={"started_at": a_day_later - timedelta(minutes=5)})
    assert versions_to_stop([started, newest], [], policy, a_day_later) == []
    assert versions_to_stop([started, newest], [], policy, a_day_later + timedelta(hours=1)) == [
        started
    ]


def test_an_alias_target_naming_a_stopped_version_is_found_in_any_region() -> None:
    versions = {
        "v1": version("v1", VersionStatus.READY),
        "v2": version("v2", VersionStatus.STOPPING),
        "v3": version("v3", VersionStatus.STOPPED),
        "v4": version("v4", VersionStatus.DEPLOYING),
    }
    targets = [AliasTarget(weights={"v1": 90, "v2": 10}), AliasTarget(version="v3")]
    assert stopped_versions(targets, versions) == ["v2", "v3"]
    assert stopped_versions([AliasTarget(version="v4"), AliasTarget(version="v9")], versions) == []
