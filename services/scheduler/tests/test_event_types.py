"""Which event each observed state is published as (pure: no NATS)."""

from __future__ import annotations

from dockyard_common import EndpointState, EventType, WorkloadState
from dockyard_scheduler.events import event_type

READY, DEPLOYING = WorkloadState.READY, WorkloadState.DEPLOYING


def state(kind: WorkloadState, upstreams: int) -> EndpointState:
    return EndpointState(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target="local-eu",
        region="eu",
        state=kind,
        upstreams=[f"http://127.0.0.1:{9000 + n}" for n in range(upstreams)],
    )


def test_a_ready_endpoint_changing_its_replica_count_is_scaled() -> None:
    assert event_type(state(READY, 2), state(READY, 1)) == EventType.ENDPOINT_SCALED
    assert event_type(state(READY, 1), state(READY, 1)) == EventType.ENDPOINT_READY
    assert event_type(None, state(READY, 2)) == EventType.ENDPOINT_READY
    assert event_type(state(READY, 2), state(DEPLOYING, 0)) == EventType.ENDPOINT_DEPLOYING
