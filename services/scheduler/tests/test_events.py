"""The scheduler's face to the event stream: facts acted on in the record's order, and a
report NATS does not take."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from dockyard_common import (
    EndpointState,
    EventType,
    TargetKind,
    TransientError,
    Version,
    VersionStatus,
    WorkloadState,
)
from dockyard_common.events import make_event
from dockyard_common.runtime import EventPublisher, connect_nats
from dockyard_scheduler.drivers import Drivers
from dockyard_scheduler.drivers.fake import FakeDriver
from dockyard_scheduler.events import EventHandler, Reports
from dockyard_scheduler.reconcile import Reconciler
from tests.harness.infrastructure import Infrastructure

from .test_reconcile import Reported, a_version, key_of, record

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


def fact(event_type: str, version: Version, revision: int):  # type: ignore[no-untyped-def]
    return make_event(
        event_type, data=version, event_id=f"{event_type}:{revision}", source="t", revision=revision
    )


async def test_a_fact_older_than_the_last_acted_on_changes_nothing(
    private_js: JetStreamContext,
) -> None:
    built = a_version("v1", VersionStatus.BUILT)
    await record(private_js, built)
    driver = FakeDriver()
    handler = EventHandler(
        Reconciler(private_js, Drivers({TargetKind.LOCAL: driver}), Reported()),
        Reports(EventPublisher(private_js, source="tests/scheduler")),
    )
    stopping = built.model_copy(update={"status": VersionStatus.STOPPING})
    # The stop (revision 12) is acted on; the build's fact (revision 10), delivered again
    # after it, is about a state the record left: nothing starts.
    await handler.on_event(fact(EventType.VERSION_STOPPING, stopping, 12), None)  # type: ignore[arg-type]
    await handler.on_event(fact(EventType.VERSION_BUILT, built, 10), None)  # type: ignore[arg-type]
    assert driver.workload_keys() == set()
    # Started again (revision 14): now it runs.
    await handler.on_event(fact(EventType.VERSION_STARTING, built, 14), None)  # type: ignore[arg-type]
    assert driver.workload_keys() == {key_of("v1"), key_of("v1", "local-us")}


async def test_a_report_nats_does_not_take_is_a_transient_error_the_driver_retries(
    infrastructure: Infrastructure,
) -> None:
    nc = await connect_nats(infrastructure.nats_url, name="dockyard-tests-closed")
    reports = Reports(EventPublisher(nc.jetstream(), source="tests/scheduler"))
    await nc.close()

    with pytest.raises(TransientError, match=r"acme\.demo\.web\.v1/predict/local-eu not published"):
        await reports.endpoint(state(READY, 1))
