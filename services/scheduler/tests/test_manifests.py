"""Rendered Kubernetes objects are what an API server accepts, and say what the user asked.

Every variant is checked against the official strict schemas and the API server's own
semantic checks (tests/harness/kube_schema.py); broken objects prove each check bites.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dockyard_common import CodeRef, EndpointSpec, ImageInfo, Replicas, Target, TargetKind, Version
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.kubernetes.manifests import (
    ManifestError,
    image_by_digest,
    label_value,
    namespace_name,
    render_workload,
)
from dockyard_scheduler.drivers.kubernetes.rollouts import pod_failure_reason, rollout_progress
from tests.harness.kube_schema import manifest_errors, quantity_value

DIGEST = "sha256:" + "a" * 64
MANIFEST = "sha256:" + "b" * 64
EU = Target(name="k8s-eu", region="eu", kind=TargetKind.KUBERNETES, context="eu")


def a_workload(
    *,
    owner: str = "acme",
    project: str = "demo",
    deployment: str = "web",
    version: str = "20260101.1",
    reference: str = "registry.example.com:5000/acme/demo:20260101.1",
    env: dict[str, str] | None = None,
    name: str = "predict",
    **endpoint: Any,
) -> Workload:
    spec = EndpointSpec.model_validate({"name": name, "wsgi": "app:app", **endpoint})
    v = Version(
        owner=owner,
        project=project,
        deployment=deployment,
        name=version,
        code=CodeRef(blob=DIGEST),
        targets=[EU.name],
        endpoints=[spec],
        env=env or {},
        image=ImageInfo(reference=reference, digest=DIGEST, layers=[], endpoints={}),
    )
    return Workload(v, spec, EU, MANIFEST)


VARIANTS: dict[str, Workload] = {
    "wsgi-defaults": a_workload(),
    "server-command-port": a_workload(wsgi=None, **{"server-command": "python -m x", "port": 9000}),
    "autoscaled": a_workload(replicas=Replicas(min=2, max=10, metric="cpu", target_cpu_percent=60)),
    "autoscaled-on-load": a_workload(replicas=Replicas(min=2, max=10)),
    "fixed-three": a_workload(replicas=Replicas(min=3, max=3)),
    "resources-gpu": a_workload(
        resources={
            "cpu": {"min": 0.25, "max": 2},
            "memory": {"min": 256, "max": 1024},
            "devices": {"nvidia.com/gpu": 1},
            "ephemeral-storage": {"max": 500},
        },
        **{"node-selector": "cloud.google.com/gke-accelerator=nvidia-tesla-t4"},
        tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "ml"},
        ],
    ),
    "long-names": a_workload(
        owner="o" * 63, project="p" * 63, deployment="d" * 63, version="v" * 63, name="e" * 63
    ),
    "digit-first-deployment": a_workload(deployment="2fast", version="v2"),
    "user-env": a_workload(env={"MODEL": "big", "PORT": "1"}),
    "registry-by-digest": a_workload(reference="registry.example.com/acme/demo@" + DIGEST),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_accepted_by_the_schemas_and_semantic_checks(
    variant: str,
) -> None:
    rendered = render_workload(VARIANTS[variant])
    for obj in rendered.objects:
        assert manifest_errors(obj) == [], f"{variant}: {obj['kind']} {obj['metadata']['name']}"


def _by_kind(workload: Workload) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_workload(workload).objects}


def test_an_autoscaled_endpoint_leaves_the_replica_count_to_its_autoscaler() -> None:
    objects = _by_kind(VARIANTS["autoscaled"])
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    fixed = _by_kind(VARIANTS["fixed-three"])
    assert fixed["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in fixed


def test_an_endpoint_autoscaled_on_load_has_no_hpa_its_count_is_the_scheduler_s() -> None:
    objects = _by_kind(VARIANTS["autoscaled-on-load"])
    assert "replicas" not in objects["Deployment"]["spec"]
    assert "HorizontalPodAutoscaler" not in objects


def test_the_image_is_pinned_by_the_endpoint_manifest_digest() -> None:
    container = _by_kind(a_workload())["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example.com:5000/acme/demo@{MANIFEST}"
    assert image_by_digest("localhost:5000/x", MANIFEST) == f"localhost:5000/x@{MANIFEST}"


def test_an_oci_layout_image_cannot_run_on_kubernetes_and_says_to_configure_a_registry() -> None:
    with pytest.raises(ManifestError, match="configure a registry"):
        render_workload(a_workload(reference="oci:/var/dockyard/images:acme-demo-v1"))


def test_resources_placement_and_environment_follow_the_endpoint_spec() -> None:
    pod = _by_kind(VARIANTS["resources-gpu"])["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {
            "cpu": "2",
            "memory": "1024Mi",
            "ephemeral-storage": "500Mi",
            "nvidia.com/gpu": "1",
        },
    }
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"][0] == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    user = _container(_by_kind(VARIANTS["user-env"])["Deployment"])
    env = {e["name"]: e["value"] for e in user["env"]}
    assert env["PORT"] == "8000", "the platform's PORT wins over the user's"
    assert env["MODEL"] == "big"
    assert env["VH_DEFAULT_PREFIX"] == "/acme/demo/web/20260101.1/predict"


def test_wsgi_endpoints_probe_the_runner_health_route_and_commands_their_port() -> None:
    wsgi = _by_kind(a_workload())["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert wsgi["readinessProbe"]["httpGet"] == {"path": "/_dockyard/health", "port": 8000}
    command = _by_kind(VARIANTS["server-command-port"])["Deployment"]
    probe = command["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": 9000}


def test_names_stay_dns_labels_and_distinct_when_they_must_be_shortened() -> None:
    long = render_workload(VARIANTS["long-names"])
    assert len(long.namespace) <= 63 and len(long.name) <= 63
    other = render_workload(
        a_workload(
            owner="o" * 63,
            project="p" * 63,
            deployment="d" * 63,
            version="v" * 62 + "w",
            name="e" * 63,
        )
    )
    assert other.name != long.name, "two versions sharing a long prefix got one name"
    dotted = render_workload(a_workload(version="1.2"))
    dashed = render_workload(a_workload(version="1-2"))
    assert dotted.name != dashed.name
    assert namespace_name("acme", "demo") == "dy-acme-demo"
    assert render_workload(a_workload()).upstream == (
        f"http://{render_workload(a_workload()).name}.dy-acme-demo.svc:8000"
    )


def test_label_values_that_would_be_invalid_are_hashed_not_rejected() -> None:
    assert label_value("v1") == "v1"
    long = label_value("x" * 80)
    assert len(long) <= 63 and long != label_value("x" * 81)
    assert label_value("a/b") != "a/b"


def test_an_unchanged_workload_renders_byte_for_byte_the_same() -> None:
    assert render_workload(a_workload()) == render_workload(a_workload())
    hashes = {
        o["metadata"]["annotations"]["dockyard.io/spec-hash"]
        for o in render_workload(a_workload()).objects
    }
    changed = {
        o["metadata"]["annotations"]["dockyard.io/spec-hash"]
        for o in render_workload(a_workload(replicas=Replicas(min=2, max=2))).objects
    }
    assert len(hashes - changed) == 1, "only the Deployment changes with its replica count"


# --- the checks themselves bite -------------------------------------------------------------


def _deployment() -> dict[str, Any]:
    return copy.deepcopy(_by_kind(VARIANTS["resources-gpu"])["Deployment"])


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def test_unknown_fields_and_wrong_types_are_all_reported_by_the_strict_schema() -> None:
    broken = _deployment()
    broken["spec"]["replicas"] = "three"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    del broken["spec"]["selector"]
    errors = manifest_errors(broken)
    assert any("spec.replicas" in e for e in errors), errors
    assert any("imagePullPolicyy" in e for e in errors), errors
    assert any("'selector' is a required property" in e for e in errors), errors


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda o: o["metadata"].update(name="Web_V1"), "DNS-1123 subdomain"),
        (lambda o: o["metadata"].update(namespace="-bad"), "metadata.namespace"),
        (
            lambda o: o["metadata"]["labels"].update({"dockyard.io/version": "x" * 64}),
            "label value",
        ),
        (lambda o: _container(o)["resources"]["limits"].update(cpu="two"), "no quantity"),
        (lambda o: _container(o)["resources"]["requests"].update(cpu="3"), "must be <= its limit"),
        (lambda o: _container(o)["ports"][0].update(containerPort=70000), "outside 1-65535"),
        (lambda o: _container(o)["env"].append({"name": "1BAD=", "value": "x"}), "env name"),
        (lambda o: o["spec"]["selector"]["matchLabels"].update(extra="x"), "does not match"),
        (
            lambda o: _container(o)["readinessProbe"]["httpGet"].update(port="web"),
            "no container port",
        ),
    ],
)
def test_each_semantic_check_of_the_api_server_catches_its_breakage(
    breakage: Any, expected: str
) -> None:
    broken = _deployment()
    breakage(broken)
    errors = manifest_errors(broken)
    assert any(expected in e for e in errors), errors


def test_service_hpa_and_pdb_breakages_are_caught() -> None:
    objects = _by_kind(VARIANTS["autoscaled"])
    service = copy.deepcopy(objects["Service"])
    service["metadata"]["name"] = "1starts-with-digit"
    service["spec"]["ports"][0]["port"] = 0
    errors = manifest_errors(service)
    assert any("DNS-1035" in e for e in errors) and any("outside" in e for e in errors), errors
    hpa = copy.deepcopy(objects["HorizontalPodAutoscaler"])
    hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"] = 5, 2
    assert any("must be >= minReplicas" in e for e in manifest_errors(hpa))
    pdb = copy.deepcopy(objects["PodDisruptionBudget"])
    pdb["spec"]["minAvailable"] = 1
    assert any("cannot both be set" in e for e in manifest_errors(pdb))


def test_quantities_parse_as_the_api_server_reads_them() -> None:
    assert quantity_value("250m") == quantity_value("0.25")
    assert quantity_value("1Gi") == 1024 * quantity_value("1Mi")  # type: ignore[operator]
    assert quantity_value("1e3") == 1000
    assert quantity_value("1.5.2") is None and quantity_value("12 Mi") is None


# --- rollout state ------------------------------------------------------------------------


def test_a_rollout_is_done_once_the_latest_generation_is_available() -> None:
    seen = {"metadata": {"generation": 2}, "spec": {"replicas": 2}}
    assert not rollout_progress({**seen, "status": {"observedGeneration": 1}}).done
    partial = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}
    assert not rollout_progress({**seen, "status": partial}).done
    assert rollout_progress({**seen, "status": {**partial, "availableReplicas": 2}}).done


def test_the_pod_reason_names_image_pulls_crash_loops_and_scheduling() -> None:
    def waiting(reason: str) -> dict[str, Any]:
        return {
            "status": {
                "phase": "Pending",
                "containerStatuses": [{"state": {"waiting": {"reason": reason, "message": "m"}}}],
            }
        }

    assert pod_failure_reason([waiting("ImagePullBackOff")]) == "ImagePullBackOff: m"
    assert pod_failure_reason([waiting("CrashLoopBackOff")]) == "CrashLoopBackOff: m"
    unschedulable = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/3 nodes have nvidia.com/gpu",
                }
            ]
        }
    }
    assert "nvidia.com/gpu" in (pod_failure_reason([unschedulable]) or "")
    assert pod_failure_reason([waiting("ContainerCreating")]) == "pod ? is Pending"
