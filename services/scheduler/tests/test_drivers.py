"""What every driver shares: reporting a state until it is published."""

from __future__ import annotations

from dockyard_common import EndpointState, TransientError, WorkloadState
from dockyard_scheduler.drivers import report_until_published

STATE = EndpointState(
    owner="acme",
    project="demo",
    deployment="web",
    version="v1",
    endpoint="predict",
    target="local-eu",
    region="eu",
    state=WorkloadState.READY,
    upstreams=["http://127.0.0.1:9000"],
)


async def test_a_report_that_could_not_be_published_is_tried_again_until_it_is() -> None:
    tried: list[EndpointState] = []

    async def report(state: EndpointState) -> None:
        tried.append(state)
        if len(tried) == 1:
            raise TransientError("NATS is away")

    await report_until_published(report, STATE, "acme.demo.web.v1/predict/local-eu")

    assert tried == [STATE, STATE]
