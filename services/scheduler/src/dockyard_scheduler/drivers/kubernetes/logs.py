"""The recent log lines of a Kubernetes workload: one entry per pod of its Deployment.

Pods are found by the workload's instance label (pods of an older ReplicaSet still rolling
out count too: they serve as well) and their logs read concurrently on the cluster's threads.
Someone waits for the answer, so nothing is retried: a pod whose log cannot be read (still
waiting to start, say) gets an entry with the API server's reason; a pod listing that fails
raises, and its target's answer carries the reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dockyard_common import DockyardError
from dockyard_common.logs import ReplicaLogs
from dockyard_scheduler.drivers.kubernetes.api import ClusterApi
from dockyard_scheduler.drivers.kubernetes.manifests import (
    CONTAINER_NAME,
    INSTANCE_LABEL,
    selector_of,
)

__all__ = ["NoPods", "workload_logs"]


class NoPods(DockyardError):
    """The workload's Deployment has no pod (yet): there is no log to read."""


def _age_then_name(pod: dict[str, Any]) -> tuple[str, str]:
    meta = pod["metadata"]
    return str(meta.get("creationTimestamp") or ""), str(meta["name"])


async def workload_logs(
    api: ClusterApi, namespace: str, instance: str, tail: int
) -> list[ReplicaLogs]:
    """The last ``tail`` lines of each pod of the workload named ``instance``, oldest pod first."""
    pods = sorted(
        await api.list("pods", selector_of({INSTANCE_LABEL: instance}), namespace, attempts=1),
        key=_age_then_name,
    )
    if not pods:
        raise NoPods(f"{api.target}: no pod of {instance} runs in {namespace}")
    names = [str(pod["metadata"]["name"]) for pod in pods]
    read = await asyncio.gather(
        *(api.pod_log(namespace, name, CONTAINER_NAME, tail) for name in names),
        return_exceptions=True,
    )
    entries = []
    for index, (name, lines) in enumerate(zip(names, read, strict=True)):
        if isinstance(lines, DockyardError):
            entries.append(ReplicaLogs(replica=index, lines=[], name=name, error=str(lines)))
        elif isinstance(lines, BaseException):
            raise lines
        else:
            entries.append(ReplicaLogs(replica=index, lines=lines.splitlines(), name=name))
    return entries
