"""The Kubernetes driver against a real cluster: K3s in a container (testcontainers).

Runs where a Docker-compatible engine answers and can pull the K3s image; elsewhere it is
skipped with the reason (``-ra`` prints it in the summary). The endpoint's image lives in a
registry that does not exist, so the test needs no image but K3s itself: the real API server
accepts the applied objects, the real controllers report the pull failure, and the driver
turns that into ``endpoint.failed`` with the pod's reason, then collects the objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard_common import Target, TargetKind, WorkloadState
from dockyard_scheduler.drivers.kubernetes import KubernetesDriver
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.containers import engine_or_skip

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

K3S_IMAGE = "docker.io/rancher/k3s:v1.31.4-k3s1"


def _pull_error(client: Any, image: str) -> str | None:
    """Pull ``image``; the engine's reason when it cannot (None when it is there)."""
    repository, _, tag = image.rpartition(":")
    reasons: list[str] = []
    try:
        for line in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                reasons.append(str(line["error"]))
        client.images.get(image)
    except Exception as exc:
        reasons.append(str(exc).splitlines()[0])
    return "; ".join(reasons)[:400] if reasons else None


@pytest.fixture(scope="module")
def k3s_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A kubeconfig (and its context) of a K3s cluster in a container."""
    client = engine_or_skip()
    try:
        try:
            client.images.get(K3S_IMAGE)
        except Exception:
            error = _pull_error(client, K3S_IMAGE)
            if error is not None:
                pytest.skip(
                    f"the K3s image {K3S_IMAGE} cannot be pulled here (no registry network?): "
                    f"{error}"
                )
    finally:
        client.close()
    from testcontainers.community.k3s import K3SContainer

    with K3SContainer(K3S_IMAGE) as k3s:
        config: dict[str, Any] = yaml.safe_load(k3s.config_yaml())
        path = tmp_path_factory.mktemp("k3s") / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        yield path, str(config["current-context"])


async def test_a_real_cluster_accepts_the_objects_and_reports_the_pull_failure(
    k3s_kubeconfig: tuple[Path, str], tmp_path: Path
) -> None:
    from services.scheduler.tests.test_kube_driver import States, state_is, workload

    kubeconfig, context = k3s_kubeconfig
    settings = SchedulerSettings(
        data_dir=tmp_path, kubeconfig=kubeconfig, kube_rollout_deadline_s=20, kube_poll_s=1
    )
    states = States()
    driver = KubernetesDriver(settings, states)
    cluster = Target(name="k8s-eu", region="eu", kind=TargetKind.KUBERNETES, context=context)
    wanted = workload(reference="registry.invalid/dockyard/missing:v1")
    wanted = type(wanted)(wanted.version, wanted.endpoint, cluster, wanted.manifest_digest)
    try:
        assert await driver.ensure(wanted)
        failed = await states.wait("failed", state_is(WorkloadState.FAILED), within_s=180)
        assert failed.reason is not None
        assert any(r in failed.reason for r in ("ErrImagePull", "ImagePullBackOff")), failed.reason
        assert await driver.remove(wanted.key)
        tracked_cluster = await driver._cluster(cluster)
        for plural in ("deployments", "services", "poddisruptionbudgets"):
            assert await tracked_cluster.api.list(plural, tracked_cluster.selector) == [], plural
    finally:
        await driver.close()
