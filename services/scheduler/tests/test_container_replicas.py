"""What a container workload's replicas add up to, reported as one endpoint state."""

from __future__ import annotations

from dockyard_common import CodeRef, EndpointSpec, Target, TargetKind, Version, WorkloadState
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.container.engine import container_limits
from dockyard_scheduler.drivers.container.replicas import Replica, ReplicaGroup


def _group(count: int) -> ReplicaGroup:
    version = Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[EndpointSpec.model_validate({"name": "web", "server-command": "serve"})],
        targets=["box"],
    )
    target = Target(name="box", region="eu", kind=TargetKind.CONTAINER, address="127.0.3.1")
    workload = Workload(version, version.endpoints[0], target, f"sha256:{'1' * 64}")
    return ReplicaGroup(workload, [Replica(index) for index in range(count)])


def test_the_workload_is_ready_with_the_upstreams_of_the_replicas_that_serve() -> None:
    group = _group(2)
    group.replicas[0].ready, group.replicas[0].host_port = True, 4001
    group.replicas[1].failed = "never answered HTTP"

    assert group.observed() == (WorkloadState.READY, ("http://127.0.3.1:4001",), None)


def test_the_workload_is_not_ready_until_every_replica_came_up() -> None:
    group = _group(2)
    group.replicas[0].ready, group.replicas[0].host_port = True, 4001

    assert group.observed()[0] is WorkloadState.DEPLOYING

    group.rolled_out = True  # once reported ready, one replica down keeps it serving

    assert group.observed() == (WorkloadState.READY, ("http://127.0.3.1:4001",), None)


def test_the_workload_fails_only_once_every_replica_failed() -> None:
    group = _group(2)
    group.replicas[0].failed = "exited with code 1"

    assert group.observed() == (WorkloadState.DEPLOYING, (), "exited with code 1")

    group.replicas[1].failed = "exited with code 1"

    assert group.observed() == (WorkloadState.FAILED, (), "exited with code 1")


def test_a_crash_is_said_while_no_replica_serves() -> None:
    group = _group(1)
    group.note = "replica 0 exited with code 137; restart 1 in 0.5 s (crash-looping ...)"

    assert group.observed() == (WorkloadState.DEPLOYING, (), group.note)


def test_cpu_and_memory_limits_come_from_the_endpoint_resources() -> None:
    resources = {"cpu": {"min": 1, "max": 2}, "memory": {"min": 512}, "devices": {"gpu": 1}}

    assert container_limits(resources) == {"nano_cpus": 2_000_000_000, "mem_limit": "512m"}
    assert container_limits({}) == {}
    assert container_limits({"cpu": {"max": "a lot"}, "memory": 256}) == {"mem_limit": "256m"}
