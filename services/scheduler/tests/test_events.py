"""What the scheduler publishes: which event each observed state is, and a report NATS does
not take."""

from __future__ import annotations

import pytest

from dockyard_common import (
    EndpointState,
    EventPublisher,
    EventType,
    TransientError,
    WorkloadState,
    connect_nats,
)
from dockyard_scheduler.events import Reports, event_type
from tests.harness.infrastructure import Infrastructure

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


async def test_a_report_nats_does_not_take_is_a_transient_error_the_driver_retries(
    infrastructure: Infrastructure,
) -> None:
    nc = await connect_nats(infrastructure.nats_url, name="dockyard-tests-closed")
    reports = Reports(EventPublisher(nc.jetstream(), source="tests/scheduler"))
    await nc.close()

    with pytest.raises(TransientError, match=r"acme\.demo\.web\.v1/predict/local-eu not published"):
        await reports.endpoint(state(READY, 1))
