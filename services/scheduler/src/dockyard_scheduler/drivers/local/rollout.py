"""How a local workload's replica states add up to its endpoint's state: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard_common.models import WorkloadState

__all__ = ["CRASH_LOOP_RESTARTS", "EndpointSummary", "ReplicaStatus", "summarise"]

CRASH_LOOP_RESTARTS = 3
"""A replica that exited this many times without staying up is reported crash-looping."""


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as its supervisor last saw it."""

    index: int
    state: WorkloadState
    upstream: str
    reason: str | None = None


@dataclass(frozen=True)
class EndpointSummary:
    """An endpoint on one target: its state, the upstreams that serve, and why if not all."""

    state: WorkloadState
    upstreams: list[str]
    reason: str | None


def summarise(replicas: list[ReplicaStatus], *, was_ready: bool) -> EndpointSummary:
    """The endpoint's state from its replicas'.

    A first rollout is ready once every replica is; after that the endpoint stays ready
    while any replica serves (fewer upstreams, the reason naming the others). It fails
    when a replica failed for good and none serves.
    """
    ready = [r for r in replicas if r.state is WorkloadState.READY]
    troubled = [r for r in replicas if r.state is not WorkloadState.READY]
    reason = "; ".join(f"replica {r.index}: {r.reason}" for r in troubled if r.reason) or None
    if ready and (was_ready or not troubled):
        if troubled:
            reason = f"{len(ready)} of {len(replicas)} replicas ready; {reason or 'starting'}"
        return EndpointSummary(WorkloadState.READY, [r.upstream for r in ready], reason)
    if any(r.state is WorkloadState.FAILED for r in replicas):
        return EndpointSummary(WorkloadState.FAILED, [], reason)
    return EndpointSummary(WorkloadState.DEPLOYING, [], reason)
