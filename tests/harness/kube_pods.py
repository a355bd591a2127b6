"""The pods of the Kubernetes API-server stub (tests/harness/kube_stub.py) and their logs.

The stub runs no containers: each Deployment stands for ``spec.replicas`` pods (1 when an
HPA owns the count), running when rollouts are available and waiting otherwise, and each
pod's log is whatever lines the test set for it. The log endpoint answers as an API server
does: ``tailLines`` keeps the last lines, an unknown ``container`` or a container still
waiting to start is a 400 with the reason, an unknown pod a 404.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LogAnswer", "pod_log", "synthetic_pods"]

LogAnswer = tuple[int, str]
"""(HTTP status, body): the log text, or the reason it cannot be read."""


def synthetic_pods(
    objects: dict[tuple[str, str, str], dict[str, Any]],
    namespace: str,
    *,
    rollouts: str,
    pod_waiting: str,
) -> dict[str, dict[str, Any]]:
    """Pod name -> pod, for every Deployment stored in ``namespace``."""
    pods = {}
    for (plural, ns, name), deployment in objects.items():
        if plural != "deployments" or ns != namespace:
            continue
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        if rollouts == "available":
            state, phase = {"running": {}}, "Running"
        else:
            message = f"stub: {pod_waiting} for {container['image']}"
            state = {"waiting": {"reason": pod_waiting, "message": message}}
            phase = "Pending"
        for index in range(int(deployment["spec"].get("replicas", 1))):
            pods[f"{name}-{index}"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-{index}",
                    "namespace": ns,
                    "labels": template["metadata"]["labels"],
                },
                "spec": {"containers": [{"name": container["name"]}]},
                "status": {
                    "phase": phase,
                    "containerStatuses": [{"name": container["name"], "state": state}],
                },
            }
    return pods


def pod_log(
    pod: dict[str, Any] | None, name: str, lines: list[str], query: dict[str, str]
) -> LogAnswer:
    """What ``GET .../pods/{name}/log`` answers for ``pod`` whose container wrote ``lines``."""
    if pod is None:
        return 404, f'pods "{name}" not found'
    statuses = {s["name"]: s for s in pod["status"]["containerStatuses"]}
    container = query.get("container") or next(iter(statuses))
    if container not in statuses:
        return 400, f"container {container} is not valid for pod {name}"
    waiting = statuses[container]["state"].get("waiting")
    if waiting is not None:
        return 400, (
            f'container "{container}" in pod "{name}" is waiting to start: {waiting["reason"]}'
        )
    tail = query.get("tailLines")
    shown = lines[-int(tail) :] if tail is not None and int(tail) > 0 else lines
    return 200, "".join(f"{line}\n" for line in shown)
