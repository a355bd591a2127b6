"""The Kubernetes objects of a workload: pure rendering, no I/O.

Per owner/project a namespace; per endpoint of a version a Deployment (pinned by image
digest), a Service, a PodDisruptionBudget and, when the endpoint is autoscaled on CPU
(``replicas.metric: cpu``), a HorizontalPodAutoscaler that owns the replica count. An
endpoint autoscaled on request load (``metric: concurrency``, the default) has its count set
by the scheduler's autoscaler instead (:data:`SCALE_FIELD_MANAGER` owns ``spec.replicas``).
Every object carries the labels the driver finds it by (garbage collection, adoption after a
restart) and the hash of its own rendering, so that an unchanged object is never written
twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dockyard_common.errors import PermanentError
from dockyard_scheduler.desired import Workload, endpoint_prefix

__all__ = [
    "CONTAINER_NAME",
    "FIELD_MANAGER",
    "HEALTH_PATH",
    "MANAGED_BY",
    "SCALE_FIELD_MANAGER",
    "ManifestError",
    "Rendered",
    "image_by_digest",
    "label_value",
    "namespace_name",
    "object_hash",
    "object_name",
    "render_workload",
    "selector_of",
]

FIELD_MANAGER = "dockyard-scheduler"
SCALE_FIELD_MANAGER = "dockyard-autoscaler"
"""The field manager of ``spec.replicas`` of a Deployment the scheduler's autoscaler scales."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "dockyard"}
HEALTH_PATH = "/_dockyard/health"
"""The runner's health route (``dockyard_runner``): answers without touching user code."""

LABEL_PREFIX = "dockyard.io/"
KEY_ANNOTATION = f"{LABEL_PREFIX}workload-key"
HASH_ANNOTATION = f"{LABEL_PREFIX}spec-hash"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CONTAINER_NAME = "endpoint"
"""The endpoint's container in each pod (the one whose logs are the endpoint's)."""

_MAX_NAME = 63
_HASH_LEN = 8
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ManifestError(PermanentError):
    """The workload cannot run on Kubernetes as given; the message says what to change."""


@dataclass(frozen=True)
class Rendered:
    """A workload's objects (namespace first), and how the cluster reaches its endpoint."""

    namespace: str
    name: str
    objects: tuple[dict[str, Any], ...]
    upstream: str

    @property
    def namespace_object(self) -> dict[str, Any]:
        """The Namespace object (always the first one)."""
        return self.objects[0]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def _dns_label(readable: str, identity: str) -> str:
    """``readable`` as a DNS-1035 label, with a hash of ``identity`` when it had to change."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", readable.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"d-{cleaned}"
    if cleaned == readable and len(cleaned) <= _MAX_NAME and _DNS_LABEL.fullmatch(cleaned):
        return cleaned
    # Lossy or too long: a hash of the identity keeps distinct workloads distinct.
    head = cleaned[: _MAX_NAME - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{_digest(identity)}"


def namespace_name(owner: str, project: str) -> str:
    """The namespace of an owner's project: ``dy-<owner>-<project>`` (hashed past 63)."""
    return _dns_label(f"dy-{owner}-{project}", f"{owner}/{project}")


def object_name(workload: Workload) -> str:
    """The name of an endpoint of a version's objects: ``<deployment>-<version>-<endpoint>``."""
    v = workload.version
    return _dns_label(
        f"{v.deployment}-{v.name}-{workload.endpoint.name}",
        f"{v.owner}/{v.project}/{v.deployment}/{v.name}/{workload.endpoint.name}",
    )


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a readable prefix and a hash of it."""
    if len(value) <= _MAX_NAME and _LABEL_VALUE.fullmatch(value):
        return value
    head = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[: _MAX_NAME - _HASH_LEN - 1]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{_digest(value)}" if head else _digest(value)


def image_by_digest(reference: str, manifest_digest: str) -> str:
    """``<repository>@<digest>`` for an image ``reference`` (tag or digest dropped).

    An ``oci:`` layout lives on the scheduler's disk, which no cluster can pull from.
    """
    if reference.startswith("oci:"):
        raise ManifestError(
            f"the image {reference!r} is an OCI layout on the build machine, which a "
            "Kubernetes cluster cannot pull: configure a registry for the builder "
            "(the embedded default writes no registry) to run on Kubernetes targets"
        )
    repository = reference.split("@", 1)[0]
    slash = repository.rfind("/")
    colon = repository.rfind(":")
    if colon > slash:  # a tag, not a registry port
        repository = repository[:colon]
    return f"{repository}@{manifest_digest}"


def object_hash(obj: dict[str, Any]) -> str:
    """A stable hash of an object's rendering (its own hash annotation left out)."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    meta = dict(obj.get("metadata", {}))
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != HASH_ANNOTATION}
    meta["annotations"] = annotations
    body["metadata"] = meta
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def selector_of(labels: dict[str, str]) -> str:
    """A label selector string matching every label given."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _quantity(value: Any, unit: str) -> str:
    """A valohai number as a Kubernetes quantity: CPU in cores, memory and storage in MB."""
    number = Decimal(str(value))
    if number <= 0:
        raise ManifestError(f"resource amounts must be positive, not {value!r}")
    if unit == "cpu":
        millis = number * 1000
        return str(int(number)) if number == int(number) else f"{int(millis.to_integral())}m"
    return f"{int(number.to_integral())}Mi"


def _resources(resources: dict[str, Any], *, autoscaled: bool) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for field, key, unit in (
        ("cpu", "cpu", "cpu"),
        ("memory", "memory", "mb"),
        ("ephemeral-storage", "ephemeral-storage", "mb"),
    ):
        spec = resources.get(field) or {}
        if not isinstance(spec, dict):
            raise ManifestError(f"resources.{field} must be a mapping with min/max")
        if spec.get("min") is not None:
            requests[key] = _quantity(spec["min"], unit)
        if spec.get("max") is not None:
            limits[key] = _quantity(spec["max"], unit)
    for device, count in (resources.get("devices") or {}).items():
        # Extended resources are whole and cannot be overcommitted: limits only.
        limits[str(device)] = str(int(count))
    if autoscaled and "cpu" not in requests and "cpu" not in limits:
        # The autoscaler measures utilisation against the CPU request; without one it is blind.
        requests["cpu"] = "100m"
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _node_selector(text: str | None) -> dict[str, str]:
    """valohai's ``node-selector: key=value`` (several joined by commas)."""
    selector: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            selector[key.strip()] = value.strip()
    return selector


_TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")


def _container(workload: Workload, image: str) -> dict[str, Any]:
    spec = workload.endpoint
    port = spec.listen_port
    env = {**workload.version.env}
    env.update(
        PORT=str(port),
        HOST="0.0.0.0",  # noqa: S104 -- inside a pod the server must be reachable from the Service
        VH_DEFAULT_PREFIX=endpoint_prefix(workload.version, spec.name),
    )
    probe: dict[str, Any] = (
        {"httpGet": {"path": HEALTH_PATH, "port": port}}
        if spec.wsgi is not None
        else {"tcpSocket": {"port": port}}
    )
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 3},
    }
    resources = _resources(spec.resources, autoscaled=spec.replicas.autoscaled)
    if resources:
        container["resources"] = resources
    return container


def render_workload(workload: Workload, *, progress_deadline_s: int = 600) -> Rendered:
    """Every object ``workload`` needs on its cluster, namespace first. Side-effect free.

    Raises :class:`ManifestError` when the workload cannot run on Kubernetes.
    """
    v = workload.version
    if v.image is None:
        raise ManifestError(f"version {v.name} has no image yet")
    image = image_by_digest(v.image.reference, workload.manifest_digest)
    namespace = namespace_name(v.owner, v.project)
    name = object_name(workload)
    selector = {INSTANCE_LABEL: name}
    labels = {
        **MANAGED_BY,
        **selector,
        "app.kubernetes.io/component": "endpoint",
        f"{LABEL_PREFIX}owner": label_value(v.owner),
        f"{LABEL_PREFIX}project": label_value(v.project),
        f"{LABEL_PREFIX}deployment": label_value(v.deployment),
        f"{LABEL_PREFIX}version": label_value(v.name),
        f"{LABEL_PREFIX}endpoint": label_value(workload.endpoint.name),
        f"{LABEL_PREFIX}target": label_value(workload.target.name),
    }
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {KEY_ANNOTATION: workload.key},
    }
    replicas = workload.endpoint.replicas
    pod_spec: dict[str, Any] = {
        "containers": [_container(workload, image)],
        # Thousands of Services in one namespace would otherwise become env variables.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    node_selector = _node_selector(workload.endpoint.node_selector)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if workload.endpoint.tolerations:
        pod_spec["tolerations"] = [
            {k: t[k] for k in _TOLERATION_FIELDS if k in t} for t in workload.endpoint.tolerations
        ]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "revisionHistoryLimit": 2,
        "progressDeadlineSeconds": progress_deadline_s,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if not replicas.autoscaled:
        # With an autoscaler the count is its field: applying one here would fight it.
        deployment_spec["replicas"] = replicas.min
    port = workload.endpoint.listen_port
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {**MANAGED_BY}},
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": deployment_spec},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            # maxUnavailable, not minAvailable: a single replica must not block node drains.
            "spec": {"selector": {"matchLabels": selector}, "maxUnavailable": 1},
        },
    ]
    if replicas.autoscaled and replicas.metric == "cpu":
        objects.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta,
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": replicas.min,
                    "maxReplicas": replicas.max,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": replicas.target_cpu_percent,
                                },
                            },
                        }
                    ],
                },
            }
        )
    hashed = []
    for obj in objects:
        copy = json.loads(json.dumps(obj))  # no metadata dict shared between objects
        copy["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = object_hash(copy)
        hashed.append(copy)
    return Rendered(
        namespace=namespace,
        name=name,
        objects=tuple(hashed),
        upstream=f"http://{name}.{namespace}.svc:{port}",
    )
