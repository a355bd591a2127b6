"""What the Kubernetes driver knows of each cluster and of each workload on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dockyard_common import Target, WorkloadState
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.kubernetes.api import PLURALS, ClusterApi
from dockyard_scheduler.drivers.kubernetes.manifests import MANAGED_BY, label_value, selector_of

__all__ = ["Cluster", "ObjectKey", "Tracked", "object_key", "render_inputs", "running"]

ObjectKey = tuple[str, str, str]
"""(plural, namespace, name) of one object on a cluster."""


def object_key(obj: dict[str, Any]) -> ObjectKey:
    """The (plural, namespace, name) of an object."""
    meta = obj["metadata"]
    return PLURALS[obj["kind"]], meta.get("namespace", ""), meta["name"]


def render_inputs(workload: Workload) -> tuple[Any, ...]:
    """Everything :func:`render_workload` reads (a version's status and timestamps are not)."""
    v = workload.version
    image = v.image.reference if v.image is not None else None
    return (workload.manifest_digest, image, v.env, workload.endpoint, workload.target)


def running(task: asyncio.Task[None] | None) -> bool:
    """Whether a background write is still going."""
    return task is not None and not task.done()


@dataclass
class Tracked:
    """What the driver knows of one workload on its cluster."""

    key: str
    target: Target
    namespace: str
    name: str
    upstream: str = ""
    workload: Workload | None = None
    objects: tuple[dict[str, Any], ...] = ()
    desired: dict[ObjectKey, str] = field(default_factory=dict)
    applied: dict[ObjectKey, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    reported: WorkloadState | None = None
    rollout_since: float | None = None
    """When the last write finished (monotonic): None while nothing awaits a rollout."""
    inputs: tuple[Any, ...] = ()
    """What the objects were rendered from (see :func:`_inputs`)."""
    refused: str | None = None
    """Why the workload cannot run as given (no write is tried until it changes)."""
    replicas: int | None = None
    """The count the autoscaler set (None: the Deployment's own, ``min`` or 1)."""
    scaled_because: str | None = None
    reported_scale: tuple[int | None, str | None] = (None, None)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """(owner, project, deployment, version, endpoint), parsed from the key."""
        version_key, endpoint, _ = self.key.rsplit("/", 2)
        owner, project, deployment, version = version_key.split(".", 3)
        return owner, project, deployment, version, endpoint


@dataclass
class Cluster:
    """One target's API, what was written to its namespaces, and its watchers."""

    api: ClusterApi
    target: Target
    namespaces: dict[str, str] = field(default_factory=dict)
    namespace_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    adoption: asyncio.Task[None] | None = None
    adopt_tried: float = 0.0
    poller: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def selector(self) -> str:
        """Every object this scheduler manages on this target."""
        return selector_of({**MANAGED_BY, "dockyard.io/target": label_value(self.target.name)})
