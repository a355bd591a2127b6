"""deploy/kubernetes runs the platform itself in a cluster; checked offline as an API server would.

Every object is validated against the official strict JSON schemas (all errors reported,
not only the first), then the checks a server or a careful reviewer adds: DNS-1123 names,
selectors that match their pod labels, Services that select a workload, and references
(ConfigMaps, Secrets, claims, service accounts) that exist in the kustomization.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dockyard_platform.embedded import SERVICES

KUSTOMIZE = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
SCHEMAS = (
    Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.30.0-local-strict"
)
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
WORKLOADS = ("Deployment", "StatefulSet")


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())
    return loaded


def _objects() -> list[dict[str, Any]]:
    objects = []
    for name in _kustomization()["resources"]:
        objects += [doc for doc in yaml.safe_load_all((KUSTOMIZE / name).read_text()) if doc]
    return objects


@cache
def _registry() -> Registry[Any]:
    """The shared definitions, at the URI every kind's schema refers to them by."""
    definitions = json.loads((SCHEMAS / "_definitions.json").read_text())
    resource = Resource.from_contents(definitions, default_specification=DRAFT202012)
    return Registry().with_resource("/api/_definitions.json", resource)


def _schema_errors(obj: dict[str, Any]) -> list[str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    schema = json.loads((SCHEMAS / f"{obj['kind'].lower()}{suffix}.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    return [
        f"{where} at {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def test_every_file_is_in_the_kustomization_and_every_object_passes_the_strict_schemas() -> None:
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in KUSTOMIZE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"unlisted: {on_disk - listed}, missing: {listed - on_disk}"
    errors = [error for obj in _objects() for error in _schema_errors(obj)]
    assert errors == [], "\n".join(errors)


def test_the_platform_is_all_there() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in _objects()}
    assert ("StatefulSet", "nats") in kinds
    for name in ("redis", "registry", "api", "builder", "scheduler", "router"):
        assert ("Deployment", name) in kinds, name
    nats = next(o for o in _objects() if o["kind"] == "StatefulSet")
    assert "-js" in nats["spec"]["template"]["spec"]["containers"][0]["args"]


def test_names_selectors_and_references_hold_together() -> None:
    objects = _objects()
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    pod_labels = [
        o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in WORKLOADS
    ]
    problems = []
    for obj in objects:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        if not DNS_1123_LABEL.match(obj["metadata"]["name"]):
            problems.append(f"{label}: not a DNS-1123 name")
        if obj["kind"] in WORKLOADS:
            selector = obj["spec"]["selector"]["matchLabels"]
            labels = obj["spec"]["template"]["metadata"]["labels"]
            if not selector.items() <= labels.items():
                problems.append(f"{label}: selector {selector} does not match labels {labels}")
            pod = obj["spec"]["template"]["spec"]
            account = pod.get("serviceAccountName")
            if account and ("ServiceAccount", account) not in names:
                problems.append(f"{label}: no ServiceAccount {account}")
            for volume in pod.get("volumes", []):
                claim = volume.get("persistentVolumeClaim", {}).get("claimName")
                if claim and ("PersistentVolumeClaim", claim) not in names:
                    problems.append(f"{label}: no claim {claim}")
            for container in pod["containers"]:
                ports = {p.get("name") for p in container.get("ports", [])}
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef", {}).get("name")
                    if ref and ("ConfigMap", ref) not in names:
                        problems.append(f"{label}: no ConfigMap {ref}")
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
                    if ref and ("Secret", ref) not in names:
                        problems.append(f"{label}: no Secret {ref}")
                for probe in ("livenessProbe", "readinessProbe"):
                    port = next(iter((container.get(probe) or {}).values()), {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        problems.append(f"{label}: {probe} names no port {port}")
        if obj["kind"] in ("Service", "PodDisruptionBudget"):
            selector = obj["spec"].get("selector", {})
            selector = selector.get("matchLabels", selector)
            if not any(selector.items() <= labels.items() for labels in pod_labels):
                problems.append(f"{label}: selects no workload ({selector})")
    assert problems == [], "\n".join(problems)


LIVENESS_FILE = "DOCKYARD_LIVENESS_FILE"


def _containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every container of every workload."""
    return [
        (obj["metadata"]["name"], obj["spec"]["template"]["spec"], container)
        for obj in _objects()
        if obj["kind"] in WORKLOADS
        for container in obj["spec"]["template"]["spec"]["containers"]
    ]


def test_every_container_is_restarted_when_it_exits_and_probed_for_liveness() -> None:
    problems = []
    for name, pod, container in _containers():
        if pod.get("restartPolicy") != "Always":
            problems.append(f"{name}: restartPolicy is not Always")
        if "livenessProbe" not in container:
            problems.append(f"{name}/{container['name']}: no livenessProbe")
    assert problems == [], "\n".join(problems)


def test_every_container_a_service_sends_traffic_to_is_probed_for_readiness() -> None:
    served = set()
    for obj in _objects():
        if obj["kind"] == "Service":
            served |= set(obj["spec"]["selector"].items())
    unprobed = [
        name
        for name, _, container in _containers()
        if ("app.kubernetes.io/name", name) in served and "readinessProbe" not in container
    ]
    assert unprobed == [], f"Services send traffic to containers never checked ready: {unprobed}"


def test_a_liveness_file_probe_reads_the_file_the_container_is_told_to_touch() -> None:
    for name, _, container in _containers():
        command = " ".join(container["livenessProbe"].get("exec", {}).get("command", []))
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if LIVENESS_FILE in env:
            assert env[LIVENESS_FILE] in command, f"{name} checks {command!r}"
        assert "dockyard-alive" not in command or LIVENESS_FILE in env, f"{name} touches none"


def test_every_process_dockyard_up_starts_runs_in_the_cluster_too() -> None:
    modules = set()
    for _, _, container in _containers():
        command = container.get("command", [])
        if "-m" in command:
            modules.add(command[command.index("-m") + 1])
        elif container["image"].startswith("dockyard/"):
            modules.add("dockyard_" + container["image"].removeprefix("dockyard/"))
    expected = {f"dockyard_{s}" for s in SERVICES} | {"dockyard_api.webhooks"}
    assert expected <= modules, f"not run in the cluster: {expected - modules}"
