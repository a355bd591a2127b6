"""How a local workload's replica states add up to its endpoint's state."""

from __future__ import annotations

from dockyard_common import WorkloadState
from dockyard_scheduler.drivers.local.rollout import ReplicaStatus, summarise

READY, DEPLOYING, FAILED = WorkloadState.READY, WorkloadState.DEPLOYING, WorkloadState.FAILED


def replica(index: int, state: WorkloadState, reason: str | None = None) -> ReplicaStatus:
    return ReplicaStatus(index, state, f"http://127.0.0.1:{9000 + index}", reason)


def test_a_first_rollout_is_ready_only_when_every_replica_is() -> None:
    half = summarise([replica(0, READY), replica(1, DEPLOYING)], was_ready=False)
    assert half.state is DEPLOYING and half.upstreams == []
    full = summarise([replica(0, READY), replica(1, READY)], was_ready=False)
    assert full.state is READY and len(full.upstreams) == 2 and full.reason is None


def test_a_ready_endpoint_keeps_serving_from_the_replicas_left_and_says_why() -> None:
    summary = summarise([replica(0, READY), replica(1, DEPLOYING, "crash-looping")], was_ready=True)
    assert summary.state is READY
    assert summary.upstreams == ["http://127.0.0.1:9000"]
    assert summary.reason == "1 of 2 replicas ready; replica 1: crash-looping"


def test_a_failed_replica_fails_the_endpoint_when_none_serves() -> None:
    summary = summarise([replica(0, DEPLOYING), replica(1, FAILED, "port in use")], was_ready=False)
    assert summary.state is FAILED and summary.reason == "replica 1: port in use"
