"""What a container workload's replicas add up to, reported as one endpoint state."""

from __future__ import annotations

from typing import Any

from dockyard_common import (
    CodeRef,
    EndpointSpec,
    ImageInfo,
    Target,
    TargetKind,
    Version,
    WorkloadState,
)
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.container.replicas import Replica, ReplicaGroup
from dockyard_scheduler.drivers.container.resources import container_notes, container_resources


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


def _spec(**fields: Any) -> EndpointSpec:
    return EndpointSpec.model_validate({"name": "web", "server-command": "serve", **fields})


def test_cpu_and_memory_limits_come_from_the_endpoint_resources() -> None:
    resources = {"cpu": {"max": 2}, "memory": {"min": 256, "max": 512}}

    placed = container_resources(_spec(resources=resources))

    assert placed.limits == {
        "nano_cpus": 2_000_000_000,
        "mem_limit": "512m",
        "mem_reservation": "256m",
    }
    assert placed.notes == ()
    assert container_resources(_spec()).limits == {}
    assert container_resources(_spec(resources={"memory": 256})).limits == {"mem_limit": "256m"}


def test_gpus_become_device_requests_and_other_devices_a_note() -> None:
    devices = {"nvidia.com/gpu": 2, "example.com/fpga": 1}

    placed = container_resources(_spec(resources={"devices": devices}))

    assert placed.limits == {
        "device_requests": [{"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}]
    }
    assert placed.gpus == 2
    assert placed.notes == (
        "resources.devices example.com/fpga: 1 is not honoured on a container target",
    )


def test_every_field_a_container_target_cannot_honour_is_noted() -> None:
    spec = _spec(
        resources={"cpu": {"min": 1, "max": "a lot"}, "ephemeral-storage": 10},
        **{"node-selector": "gpu=a100", "tolerations": [{"key": "gpu", "operator": "Exists"}]},
    )

    placed = container_resources(spec)

    assert placed.limits == {"nano_cpus": 1_000_000_000}
    assert placed.notes == (
        "resources.cpu {'min': 1, 'max': 'a lot'} is not a number of cores: not honoured",
        "resources.cpu.min 1 is not reserved: a container target gives a limit only (1 CPU)",
        "resources.ephemeral-storage is not honoured on a container target",
        "node-selector 'gpu=a100' is not honoured: a container target is one engine, with no "
        "nodes to select",
        "tolerations (1) are not honoured: a container target has no node taints to tolerate",
    )


def test_the_notes_say_the_python_where_it_listens_and_what_was_not_honoured() -> None:
    group = _group(1)
    digest = f"sha256:{'1' * 64}"
    image = ImageInfo(
        reference="oci:/x:y",
        digest=digest,
        endpoints={"web": digest},
        layers=[],
        bases={"web": "python:3.9"},
        pythons={"web": "3.9"},
    )
    version = group.workload.version.model_copy(update={"image": image})
    spec = _spec(port=8501, **{"node-selector": "a=b"})
    workload = Workload(version, spec, group.workload.target, digest)

    notes = container_notes(workload, container_resources(spec))

    assert notes == (
        "runs on the Python of its image's base python:3.9 (its dependencies are built for "
        "Python 3.9)",
        "listens on port 8501 in a container of its own; each replica's port is published on "
        "127.0.3.1 (its upstream)",
        "node-selector 'a=b' is not honoured: a container target is one engine, with no nodes "
        "to select",
    )
    group.notes = notes
    assert group.endpoint_state(*group.observed()).notes == list(notes)
