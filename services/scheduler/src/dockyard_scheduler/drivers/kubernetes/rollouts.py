"""Where a Kubernetes rollout stands, read from the objects' status: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RolloutProgress", "pod_failure_reason", "rollout_progress"]

# Waiting reasons that are only a pod starting, not a pod stuck.
_STARTING = ("ContainerCreating", "PodInitializing")


@dataclass(frozen=True)
class RolloutProgress:
    """Whether a Deployment's rollout is done, and if not, what it waits for."""

    done: bool
    detail: str


def rollout_progress(deployment: dict[str, Any]) -> RolloutProgress:
    """The rollout state of a Deployment as the API server returned it (``kubectl rollout status``).

    Done when the controller has seen the latest spec (``observedGeneration >= generation``),
    every replica runs it, no old replica is left and every updated replica is available.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return RolloutProgress(False, f"waiting for the controller (generation {generation})")
    desired = int(spec.get("replicas", 1) or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < desired:
        return RolloutProgress(False, f"{updated} of {desired} replicas updated")
    if total > updated:
        return RolloutProgress(False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutProgress(False, f"{available} of {updated} updated replicas available")
    return RolloutProgress(True, f"{available} replicas available")


def _container_reason(status: dict[str, Any]) -> str | None:
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in _STARTING:
            message = waiting.get("message")
            return f"{reason}: {message}" if message else str(reason)
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return "OOMKilled: the container ran out of memory; raise resources.memory.max"
    return None


def pod_failure_reason(pods: list[dict[str, Any]]) -> str | None:
    """Why a workload's pods do not become ready (image pull, crash loop, unschedulable).

    None when no pod says anything useful (the rollout is merely slow).
    """
    for pod in pods:
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                message = condition.get("message") or condition.get("reason") or "unschedulable"
                return f"Unschedulable: {message}"
        reason = _container_reason(status)
        if reason is not None:
            return reason
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase and phase != "Running":
            return f"pod {pod.get('metadata', {}).get('name', '?')} is {phase}"
    return None
