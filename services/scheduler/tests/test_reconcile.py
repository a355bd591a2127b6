"""The full reconcile pass: the state of record on a real NATS of the test's own, the targets
behind the fake driver (what is under test is what the pass asks for and reports, not a
driver; each driver has its own tests)."""

from __future__ import annotations

from nats.js import JetStreamContext

from dockyard_common import (
    CodeRef,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    PermanentError,
    Target,
    TargetKind,
    Version,
    VersionStatus,
    WorkloadState,
)
from dockyard_common.runtime import ResourceStore
from dockyard_common.subjects import TARGETS_BUCKET, VERSIONS_BUCKET, version_key
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers import Drivers
from dockyard_scheduler.drivers.fake import FakeDriver
from dockyard_scheduler.reconcile import Reconciler

DIGEST = "sha256:" + "0" * 64
TARGETS = [
    Target(name="local-eu", region="eu", address="127.0.1.1"),
    Target(name="local-us", region="us", address="127.0.2.1"),
]


def a_version(name: str, status: VersionStatus, *, built: bool = True) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        status=status,
        code=CodeRef(blob=DIGEST),
        targets=["local-eu", "local-us"],
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
        image=ImageInfo(
            reference="oci:/x:y", digest=DIGEST, layers=[], endpoints={"predict": DIGEST}
        )
        if built
        else None,
    )


def key_of(version: str, target: str = "local-eu") -> str:
    return f"acme.demo.web.{version}/predict/{target}"


class Reported(list[EndpointState]):
    """Every state the reconciler reported, in order."""

    async def __call__(self, state: EndpointState) -> None:
        self.append(state)


async def record(js: JetStreamContext, *versions: Version) -> None:
    targets = await ResourceStore.open(js, TARGETS_BUCKET, Target)
    for target in TARGETS:
        await targets.create(target.name, target)
    store = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    for version in versions:
        key = version_key(version.owner, version.project, version.deployment, version.name)
        await store.create(key, version)


async def test_a_pass_starts_what_runnable_versions_need_and_removes_stopped_and_deleted_ones(
    private_js: JetStreamContext,
) -> None:
    ready, stopped = a_version("v1", VersionStatus.READY), a_version("v2", VersionStatus.STOPPED)
    pending = a_version("v3", VersionStatus.PENDING, built=False)
    await record(private_js, ready, stopped, pending)
    # Running before the pass: a stopped version's workload, and (found running after a
    # restart, so unknown to the driver) one of the pending version, which the record does
    # not hold as built, and one of a version the record no longer holds.
    driver = FakeDriver(running=[key_of("v3"), key_of("v4")])
    await driver.ensure(Workload(stopped, stopped.endpoints[0], TARGETS[0], DIGEST))
    driver.ensured.clear()
    reported = Reported()

    await Reconciler(private_js, Drivers({TargetKind.LOCAL: driver}), reported).reconcile_all()

    assert sorted(driver.ensured) == [key_of("v1", "local-eu"), key_of("v1", "local-us")]
    assert driver.removed == [key_of("v2"), key_of("v3"), key_of("v4")]
    assert driver.workload_keys() == {key_of("v1", "local-eu"), key_of("v1", "local-us")}
    # Only a removed workload the driver knew is reported stopped (with its target's region).
    assert [(s.version, s.target, s.region, s.state) for s in reported] == [
        ("v2", "local-eu", "eu", WorkloadState.STOPPED)
    ]


async def test_a_workload_its_driver_refuses_is_reported_failed_and_the_others_still_start(
    private_js: JetStreamContext,
) -> None:
    await record(private_js, a_version("v1", VersionStatus.BUILT))
    driver = FakeDriver(refuse={key_of("v1", "local-eu"): PermanentError("no room on local-eu")})
    reported = Reported()

    await Reconciler(private_js, Drivers({TargetKind.LOCAL: driver}), reported).reconcile_all()

    assert sorted(driver.ensured) == [key_of("v1", "local-eu"), key_of("v1", "local-us")]
    assert driver.workload_keys() == {key_of("v1", "local-us")}
    assert [(s.target, s.state, s.reason) for s in reported] == [
        ("local-eu", WorkloadState.FAILED, "could not start: no room on local-eu")
    ]
