"""What a container target makes of an endpoint's definition: the engine's limits and device
requests, and a note for every field it cannot honour. Pure: no I/O, no docker SDK.

valohai.yaml's ``resources`` has ``cpu`` (cores) and ``memory`` (megabytes), each a number or
``{min, max}``, and ``devices`` (``{"nvidia.com/gpu": 1}``). A container gets its ``max`` (else
its number, else its ``min``) as a limit; a memory ``min`` is a soft reservation; a CPU
``min`` reserves nothing on one engine. GPUs are asked for as the Docker API's device requests.
``node-selector`` and ``tolerations`` speak of a cluster's nodes, which one engine has not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard_common.models import EndpointSpec
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.resource_values import positive_number, resource_bounds

__all__ = [
    "GPU_DEVICES",
    "ContainerResources",
    "container_notes",
    "container_resources",
    "ignored_gpus_note",
]

GPU_DEVICES = {"nvidia.com/gpu": "nvidia", "gpu": "nvidia"}
"""Device names asked for as the engine's GPU device requests, with the driver to ask for."""

_KNOWN = {"cpu", "memory", "devices"}


@dataclass(frozen=True)
class ContainerResources:
    """The engine's keyword arguments for a container, and what was not honoured."""

    limits: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def gpus(self) -> int:
        """How many GPUs the device requests ask for."""
        return sum(int(r.get("Count", 0)) for r in self.limits.get("device_requests", []))


def container_resources(spec: EndpointSpec) -> ContainerResources:
    """The limits and device requests of ``spec`` on a container target, with a note for
    every field of its definition the target does not honour."""
    limits: dict[str, Any] = {}
    notes: list[str] = []
    resources = spec.resources
    cpu_min, cpu_max, readable = resource_bounds(resources.get("cpu"))
    if not readable:
        notes.append(f"resources.cpu {resources['cpu']!r} is not a number of cores: not honoured")
    if cpu_max or cpu_min:
        limits["nano_cpus"] = int((cpu_max or cpu_min or 0) * 1e9)
    if cpu_min is not None:
        notes.append(
            f"resources.cpu.min {cpu_min:g} is not reserved: a container target gives a limit "
            f"only ({(cpu_max or cpu_min):g} CPU)"
        )
    memory_min, memory_max, readable = resource_bounds(resources.get("memory"))
    if not readable:
        notes.append(f"resources.memory {resources['memory']!r} is not megabytes: not honoured")
    if memory_max or memory_min:
        limits["mem_limit"] = f"{int(memory_max or memory_min or 0)}m"
    if memory_min is not None:
        limits["mem_reservation"] = f"{int(memory_min)}m"
    requests, device_notes = _device_requests(resources.get("devices"))
    notes += device_notes
    if requests:
        limits["device_requests"] = requests
    notes += [
        f"resources.{name} is not honoured on a container target"
        for name in sorted(set(resources) - _KNOWN)
    ]
    if spec.node_selector:
        notes.append(
            f"node-selector {spec.node_selector!r} is not honoured: a container target is one "
            "engine, with no nodes to select"
        )
    if spec.tolerations:
        notes.append(
            f"tolerations ({len(spec.tolerations)}) are not honoured: a container target has "
            "no node taints to tolerate"
        )
    return ContainerResources(limits, tuple(notes))


def _device_requests(devices: Any) -> tuple[list[dict[str, Any]], list[str]]:
    if devices is None:
        return [], []
    if not isinstance(devices, dict):
        return [], [f"resources.devices {devices!r} is not a mapping of device to count"]
    requests: list[dict[str, Any]] = []
    notes: list[str] = []
    for name, count in sorted(devices.items()):
        driver = GPU_DEVICES.get(str(name))
        number = positive_number(count)
        if driver is None or number is None:
            notes.append(
                f"resources.devices {name}: {count!r} is not honoured on a container target"
            )
            continue
        requests.append({"Driver": driver, "Count": int(number), "Capabilities": [["gpu"]]})
    return requests, notes


def container_notes(workload: Workload, resources: ContainerResources) -> tuple[str, ...]:
    """What a container target makes of a workload: the Python it runs on, where it listens,
    and every field it does not honour (the endpoint state's ``notes``)."""
    image = workload.version.image
    endpoint = workload.endpoint.name
    notes = []
    if image is not None and endpoint in image.pythons:
        base = image.bases.get(endpoint) or image.base_image or "its base image"
        notes.append(
            f"runs on the Python of its image's base {base} (its dependencies are built for "
            f"Python {image.pythons[endpoint]})"
        )
    address = workload.target.address or "127.0.0.1"
    notes.append(
        f"listens on port {workload.endpoint.listen_port} in a container of its own; each "
        f"replica's port is published on {address} (its upstream)"
    )
    return (*notes, *resources.notes)


def ignored_gpus_note(gpus: int, engine: str) -> str:
    """The note of GPUs asked for that the engine dropped without a word (podman's Docker API)."""
    return (
        f"resources.devices asked for {gpus} GPU(s) and the container engine at {engine} "
        "ignored the device request: the replicas run without them"
    )
