"""The Kubernetes driver's apply, rollout watch, GC and adoption, against the API server stub.

The stub (tests/harness/kube_stub.py) answers like an API server but runs no pods; these
tests prove the driver's side of the contract, not that a cluster runs the endpoint (the
K3s test does, where a Docker engine can pull its image).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard_common import (
    CodeRef,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    PermanentError,
    Replicas,
    Target,
    TargetKind,
    Version,
    WorkloadState,
)
from dockyard_common.logs import LogsRequest
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers import Drivers
from dockyard_scheduler.drivers.kubernetes import KubernetesDriver
from dockyard_scheduler.drivers.kubernetes.api import ClusterApi, KubeconfigUnreadable
from dockyard_scheduler.logs import answer_logs
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.kube_stub import Fault, KubeStub, write_kubeconfig

DIGEST = "sha256:" + "a" * 64
TARGETS = {
    name: Target(name=name, region=name, kind=TargetKind.KUBERNETES, context=name)
    for name in ("k8s-eu", "k8s-us")
}


class States:
    """The reporter: every state the driver reported, awaitable."""

    def __init__(self) -> None:
        self.seen: list[EndpointState] = []
        self._changed = asyncio.Condition()

    async def __call__(self, state: EndpointState) -> None:
        async with self._changed:
            self.seen.append(state)
            self._changed.notify_all()

    async def wait(
        self, what: str, match: Callable[[EndpointState], bool], within_s: float = 10.0
    ) -> EndpointState:
        async def found() -> EndpointState:
            async with self._changed:
                while True:
                    for state in self.seen:
                        if match(state):
                            return state
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), within_s)
        except TimeoutError:
            seen = [(s.version, s.target, s.state.value, s.reason) for s in self.seen]
            raise AssertionError(f"no {what} within {within_s} s; reported: {seen}") from None


def workload(
    version: str = "v1",
    target: str = "k8s-eu",
    reference: str = "registry.test/acme/demo:v1",
    **endpoint: Any,
) -> Workload:
    spec = EndpointSpec.model_validate({"name": "predict", "wsgi": "app:app", **endpoint})
    v = Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=version,
        code=CodeRef(blob=DIGEST),
        targets=[target],
        endpoints=[spec],
        image=ImageInfo(
            reference=reference,
            digest=DIGEST,
            layers=[],
            endpoints={},
        ),
    )
    return Workload(v, spec, TARGETS[target], "sha256:" + "b" * 64)


def state_is(
    state: WorkloadState, version: str = "v1", target: str = "k8s-eu"
) -> Callable[[EndpointState], bool]:
    return lambda s: s.state is state and s.version == version and s.target == target


@pytest.fixture
async def stubs() -> AsyncIterator[dict[str, KubeStub]]:
    started = {name: KubeStub() for name in TARGETS}
    for stub in started.values():
        await stub.start()
    yield started
    for stub in started.values():
        await stub.stop()


def settings_for(tmp_path: Path, stubs: dict[str, KubeStub], **overrides: Any) -> SchedulerSettings:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {n: s.url for n, s in stubs.items()})
    values: dict[str, Any] = dict(
        data_dir=tmp_path, kubeconfig=kubeconfig, kube_poll_s=0.05, kube_request_timeout_s=1.0
    )
    values.update(overrides)
    return SchedulerSettings(**values)


@pytest.fixture
async def driver_of(
    tmp_path: Path, stubs: dict[str, KubeStub]
) -> AsyncIterator[Callable[..., tuple[KubernetesDriver, States]]]:
    made: list[KubernetesDriver] = []

    def make(**overrides: Any) -> tuple[KubernetesDriver, States]:
        states = States()
        driver = KubernetesDriver(settings_for(tmp_path, stubs, **overrides), states)
        made.append(driver)
        return driver, states

    yield make
    for driver in made:
        await driver.close()


async def test_workloads_are_applied_and_reported_ready_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    assert await driver.ensure(workload("v1"))
    assert await driver.ensure(workload("v2", replicas=Replicas(min=1, max=4, metric="cpu")))
    ready = await states.wait("v1 ready", state_is(WorkloadState.READY, "v1"))
    await states.wait("v2 ready", state_is(WorkloadState.READY, "v2"))
    eu = stubs["k8s-eu"]
    assert ready.upstreams == ["http://web-v1-predict.dy-acme-demo.svc:8000"]
    assert eu.names("namespaces") == {("", "dy-acme-demo")}
    assert eu.names("deployments") == {
        ("dy-acme-demo", "web-v1-predict"),
        ("dy-acme-demo", "web-v2-predict"),
    }
    assert len(eu.names("services")) == len(eu.names("poddisruptionbudgets")) == 2
    assert eu.names("horizontalpodautoscalers") == {("dy-acme-demo", "web-v2-predict")}
    owners = eu.owners[("deployments", "dy-acme-demo", "web-v2-predict")]
    assert set(owners) == {"dockyard-scheduler"}
    assert ("spec", "replicas") not in owners["dockyard-scheduler"], "an HPA owns the count"
    assert eu.requests[("PATCH", "namespaces")] == 1, "the shared namespace was written twice"
    assert stubs["k8s-us"].requests == {}, "a target no workload names was called"


async def test_an_unchanged_reapply_does_not_call_the_api_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    await driver.ensure(workload())
    await states.wait("ready", state_is(WorkloadState.READY))
    before = stubs["k8s-eu"].requests.copy()
    assert not await driver.ensure(workload()), "an unchanged workload was applied again"
    assert stubs["k8s-eu"].requests == before
    assert await driver.ensure(workload(replicas=Replicas(min=2, max=2)))
    await states.wait("rescaled", lambda s: len(states.seen) > 3 and s.state is WorkloadState.READY)
    written = stubs["k8s-eu"].requests - before
    assert written == {("PATCH", "deployments"): 1}, "only the changed Deployment is written"


async def test_the_autoscaler_owns_the_deployment_count_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    scaled = workload("v1", replicas=Replicas(min=1, max=4))
    await driver.ensure(scaled)
    await states.wait("ready", state_is(WorkloadState.READY))
    assert stubs["k8s-eu"].names("horizontalpodautoscalers") == set()
    assert driver.replica_count(scaled.key) == 1
    assert await driver.scale(scaled.key, 3, "load")
    report = await states.wait("scaled", lambda s: s.desired_replicas == 3)
    assert (report.state, report.scaled_because) == (WorkloadState.READY, "load")
    key = ("deployments", "dy-acme-demo", "web-v1-predict")
    assert stubs["k8s-eu"].objects[key]["spec"]["replicas"] == 3
    owners = stubs["k8s-eu"].owners[key]
    assert ("spec", "replicas") in owners["dockyard-autoscaler"]
    assert ("spec", "replicas") not in owners["dockyard-scheduler"]
    assert driver.replica_count(scaled.key) == 3
    assert not await driver.ensure(scaled), "an unchanged workload was applied again"
    assert stubs["k8s-eu"].objects[key]["spec"]["replicas"] == 3

    assert await driver.scale(scaled.key, 0, "idle")
    idle = await states.wait("idle", state_is(WorkloadState.IDLE))
    assert (idle.upstreams, idle.desired_replicas) == ([], 0)
    assert driver.replica_count(scaled.key) == 0
    seen = len(states.seen)
    assert await driver.scale(scaled.key, 1, "wake")
    woken = await states.wait(
        "ready again", lambda s: states.seen.index(s) >= seen and s.state is WorkloadState.READY
    )
    assert woken.upstreams == ["http://web-v1-predict.dy-acme-demo.svc:8000"]


async def test_a_stopped_version_is_collected_by_its_labels_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    for version in ("v1", "v2"):
        await driver.ensure(workload(version, replicas=Replicas(min=1, max=3, metric="cpu")))
        await states.wait(f"{version} ready", state_is(WorkloadState.READY, version))
    assert await driver.remove(workload("v1").key)
    eu = stubs["k8s-eu"]
    for plural in ("deployments", "services", "poddisruptionbudgets", "horizontalpodautoscalers"):
        assert eu.names(plural) == {("dy-acme-demo", "web-v2-predict")}, plural
    assert driver.workload_keys() == {workload("v2").key}
    assert not await driver.remove(workload("v1").key)


async def test_a_restarted_scheduler_adopts_what_runs_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    first, states = driver_of()
    await first.ensure(workload("v1"))
    await first.ensure(workload("v9"))
    await states.wait("ready", state_is(WorkloadState.READY))
    await states.wait("ready", state_is(WorkloadState.READY, "v9"))
    await first.close()
    second, states = driver_of()
    assert second.reap_leftovers() == 0
    writes = stubs["k8s-eu"].writes()
    assert not await second.ensure(workload("v1")), "what runs as wanted was written again"
    assert stubs["k8s-eu"].writes() == writes, "a restart deleted or rewrote objects"
    assert second.workload_keys() == {workload("v1").key, workload("v9").key}
    adopted = await states.wait("adopted v9 confirmed", state_is(WorkloadState.READY, "v9"))
    assert adopted.upstreams == ["http://web-v9-predict.dy-acme-demo.svc:8000"]
    assert await second.remove(workload("v9").key), "an adopted workload cannot be collected"
    assert ("dy-acme-demo", "web-v9-predict") not in stubs["k8s-eu"].names("deployments")


async def test_a_stuck_rollout_is_failed_with_the_pod_reason_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    stubs["k8s-eu"].rollouts = "stuck"
    driver, states = driver_of(kube_rollout_deadline_s=0.3)
    await driver.ensure(workload())
    failed = await states.wait("failed", state_is(WorkloadState.FAILED))
    assert failed.reason is not None and "ImagePullBackOff" in failed.reason, failed.reason
    assert "registry.test/acme/demo@sha256:" in failed.reason


async def test_one_target_failing_does_not_stop_the_other_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    stubs["k8s-eu"].inject(Fault(status=500))
    driver, states = driver_of(kube_attempts=3)
    started = time.monotonic()
    await driver.ensure(workload(target="k8s-eu"))
    await driver.ensure(workload(target="k8s-us"))
    assert time.monotonic() - started < 5, "ensure waited on the failing cluster"
    await states.wait("us ready", state_is(WorkloadState.READY, target="k8s-us"))
    failed = await states.wait("eu failed", state_is(WorkloadState.FAILED, target="k8s-eu"))
    assert "500" in (failed.reason or "")
    stubs["k8s-eu"].clear_faults()
    assert await driver.ensure(workload(target="k8s-eu")), "the next pass does not try again"
    await states.wait("eu ready", state_is(WorkloadState.READY, target="k8s-eu"))


async def test_429_and_timeouts_are_retried_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    eu = stubs["k8s-eu"]
    eu.inject(Fault(status=429, retry_after=1, times=1))
    eu.inject(Fault(delay_s=1.2, times=1))
    driver, states = driver_of()
    started = time.monotonic()
    await driver.ensure(workload())
    await states.wait("ready", state_is(WorkloadState.READY), within_s=15)
    assert time.monotonic() - started >= 1, "Retry-After was not honoured"
    assert not eu.faults, "the injected faults were not all met"
    assert eu.names("deployments")


async def test_an_image_without_a_registry_fails_and_writes_nothing_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    await driver.ensure(workload(reference="oci:/data/images:acme-demo-v1"))
    failed = await states.wait("failed", state_is(WorkloadState.FAILED))
    assert "configure a registry" in (failed.reason or "")
    assert not await driver.ensure(workload(reference="oci:/data/images:acme-demo-v1"))
    assert stubs["k8s-eu"].requests == {}


async def test_the_stub_refuses_what_an_api_server_refuses_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    """Field-manager conflicts and stale resourceVersions answer 409; force takes ownership."""
    driver, states = driver_of()
    await driver.ensure(workload())
    await states.wait("ready", state_is(WorkloadState.READY))
    eu = stubs["k8s-eu"]
    url = f"{eu.url}/apis/apps/v1/namespaces/dy-acme-demo/deployments/web-v1-predict"
    stored = eu.objects[("deployments", "dy-acme-demo", "web-v1-predict")]
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web-v1-predict"},
        "spec": {"replicas": 5},
    }
    apply = {"Content-Type": "application/apply-patch+yaml"}
    async with httpx.AsyncClient() as client:
        refused = await client.patch(
            url, params={"fieldManager": "kubectl"}, json=theirs, headers=apply
        )
        assert refused.status_code == 409 and "dockyard-scheduler" in refused.text
        stale = {**stored, "metadata": {**stored["metadata"], "resourceVersion": "1"}}
        assert (await client.put(url, json=stale)).status_code == 409
        forced = await client.patch(
            url, params={"fieldManager": "kubectl", "force": "true"}, json=theirs, headers=apply
        )
        assert forced.status_code == 200 and forced.json()["spec"]["replicas"] == 5
    # Our next apply forces the count back: the scheduler's desired state wins.
    driver._tracked[workload().key].applied.clear()
    assert await driver.ensure(workload())
    await states.wait(
        "re-applied", lambda s: s.state is WorkloadState.READY and len(states.seen) > 3
    )
    assert eu.objects[("deployments", "dy-acme-demo", "web-v1-predict")]["spec"]["replicas"] == 1


async def test_pod_logs_are_read_per_pod_with_the_tail_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    two = workload(replicas=Replicas(min=2, max=2))
    await driver.ensure(two)
    await states.wait("ready", state_is(WorkloadState.READY))
    eu = stubs["k8s-eu"]
    eu.pod_logs["web-v1-predict-0"] = ["booting", "listening on 8000", "GET / 200"]
    eu.pod_logs["web-v1-predict-1"] = ["booting", "listening on 8000"]
    logs = await driver.logs(two.key, tail=2)
    assert [(e.replica, e.name, e.lines, e.error) for e in logs] == [
        (0, "web-v1-predict-0", ["listening on 8000", "GET / 200"], None),
        (1, "web-v1-predict-1", ["booting", "listening on 8000"], None),
    ]
    assert eu.requests[("GET", "pods/log")] == 2
    assert await driver.logs(workload("v9").key, tail=2) == [], "an unknown workload has logs"


async def test_a_pod_waiting_to_start_says_why_in_its_entry_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    stubs["k8s-eu"].rollouts = "stuck"
    driver, _ = driver_of()
    await driver.ensure(workload())
    await _applied(stubs["k8s-eu"], "web-v1-predict")
    [entry] = await driver.logs(workload().key, tail=5)
    assert entry.lines == [] and entry.name == "web-v1-predict-0"
    assert entry.error is not None and "waiting to start: ImagePullBackOff" in entry.error


async def test_a_failing_cluster_gives_only_its_target_a_logs_error_against_api_server_stub(
    stubs: dict[str, KubeStub], driver_of: Callable[..., tuple[KubernetesDriver, States]]
) -> None:
    driver, states = driver_of()
    for target in TARGETS:
        await driver.ensure(workload(target=target))
        await states.wait(f"{target} ready", state_is(WorkloadState.READY, target=target))
        stubs[target].pod_logs["web-v1-predict-0"] = [f"hello from {target}"]
    drivers = Drivers({TargetKind.KUBERNETES: driver})

    async def ask(target: str) -> tuple[list[list[str]], str | None]:
        request = LogsRequest(
            owner="acme",
            project="demo",
            deployment="web",
            version="v1",
            endpoint="predict",
            target=target,
            tail=10,
        )
        reply = await answer_logs(request, TARGETS, drivers, within_s=1.5)
        return [r.lines for r in reply.replicas], reply.error

    stubs["k8s-eu"].inject(Fault(status=500))
    eu, us = await asyncio.gather(ask("k8s-eu"), ask("k8s-us"))
    assert us == ([["hello from k8s-us"]], None)
    assert eu[0] == [] and eu[1] is not None and "500" in eu[1], eu
    stubs["k8s-eu"].clear_faults()
    stubs["k8s-eu"].inject(Fault(delay_s=1.3))  # past the client's 1 s request timeout
    started = time.monotonic()
    eu = await ask("k8s-eu")
    assert time.monotonic() - started < 2.5, "a silent cluster held the answer"
    assert eu[0] == [] and eu[1] is not None, eu
    stubs["k8s-eu"].clear_faults()
    assert await ask("k8s-eu") == ([["hello from k8s-eu"]], None)


async def _applied(stub: KubeStub, name: str, within_s: float = 10.0) -> None:
    """Wait until the stub stores the Deployment ``name``."""
    deadline = time.monotonic() + within_s
    while ("dy-acme-demo", name) not in stub.names("deployments"):
        assert time.monotonic() < deadline, f"{name} not applied within {within_s} s"
        await asyncio.sleep(0.02)


async def test_a_kubeconfig_of_the_wrong_shape_fails_the_workload_naming_the_file(
    tmp_path: Path,
) -> None:
    # The client's loader trips over this with a TypeError of its own.
    broken = tmp_path / "kubeconfig"
    broken.write_text("contexts: 5\ncurrent-context: k8s-eu\n")
    driver = KubernetesDriver(SchedulerSettings(data_dir=tmp_path, kubeconfig=broken), States())
    try:
        with pytest.raises(KubeconfigUnreadable, match=str(broken)):
            ClusterApi(
                target="k8s-eu",
                kubeconfig=broken,
                context="k8s-eu",
                workers=1,
                timeout_s=1.0,
                attempts=1,
            )
        with pytest.raises(PermanentError, match=f"cannot reach target k8s-eu.*{broken}"):
            await driver.ensure(workload())
    finally:
        await driver.close()
