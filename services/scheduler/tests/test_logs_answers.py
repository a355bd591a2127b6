"""How the scheduler answers a logs request when a target's driver is slow or failing.

The drivers here are fakes on purpose: what is under test is the isolation rule (a target
that cannot be read gets an ``error``, never an exception or a late answer), not a driver.
"""

from __future__ import annotations

import asyncio

from dockyard_common import PermanentError, Target, TargetKind
from dockyard_common.logs import LogsRequest, ReplicaLogs
from dockyard_scheduler.drivers import Driver, Drivers
from dockyard_scheduler.drivers.fake import FakeDriver
from dockyard_scheduler.logs import answer_logs

TARGETS = {
    "k8s-eu": Target(name="k8s-eu", region="eu", kind=TargetKind.KUBERNETES, context="eu"),
    "box": Target(name="box", region="box", kind=TargetKind.CONTAINER),
}


class Reading(FakeDriver):
    """A driver whose logs take ``delay_s`` and then answer ``lines`` or raise ``error``."""

    def __init__(self, *, delay_s: float = 0.0, error: Exception | None = None) -> None:
        super().__init__()
        self.delay_s, self.error = delay_s, error
        self.asked: list[str] = []

    async def logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        self.asked.append(key)
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return [ReplicaLogs(replica=0, lines=[f"line {n}" for n in range(tail)])]


def request(target: str, tail: int = 3) -> LogsRequest:
    return LogsRequest(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target=target,
        tail=tail,
    )


def drivers(**by_kind: Driver) -> Drivers:
    return Drivers({TargetKind(kind): driver for kind, driver in by_kind.items()})


async def test_a_readable_target_answers_its_replicas_lines() -> None:
    reading = Reading()
    reply = await answer_logs(request("box"), TARGETS, drivers(container=reading), within_s=1.0)
    assert reply.error is None
    assert reply.replicas == [ReplicaLogs(replica=0, lines=["line 0", "line 1", "line 2"])]
    assert reading.asked == ["acme.demo.web.v1/predict/box"]


async def test_a_failing_cluster_gives_its_target_an_error_with_the_reason() -> None:
    failing = Reading(error=PermanentError("k8s-eu: list pods: 403 forbidden"))
    reply = await answer_logs(request("k8s-eu"), TARGETS, drivers(kubernetes=failing), within_s=1.0)
    assert reply.replicas == []
    assert reply.error is not None and "403 forbidden" in reply.error, reply.error


async def test_a_slow_target_is_answered_with_an_error_by_the_deadline() -> None:
    slow = Reading(delay_s=5.0)
    started = asyncio.get_running_loop().time()
    reply = await answer_logs(request("k8s-eu"), TARGETS, drivers(kubernetes=slow), within_s=0.2)
    assert asyncio.get_running_loop().time() - started < 2.0, "the deadline was not kept"
    assert reply.error is not None and "within 0.2 s" in reply.error, reply.error


async def test_a_kind_this_scheduler_does_not_drive_is_an_error() -> None:
    reply = await answer_logs(request("box"), TARGETS, drivers(kubernetes=Reading()), within_s=1.0)
    assert reply.error == "this scheduler reads no logs of container targets"
