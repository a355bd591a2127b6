"""What a local target makes of an endpoint's definition, as notes for its endpoint state.

Every field a local target does not honour gets a note: nothing is dropped silently.
"""

from __future__ import annotations

import shutil

from dockyard_common.models import EndpointSpec
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.local.environments import HOST_PYTHON
from dockyard_scheduler.drivers.resource_values import resource_bounds

__all__ = ["local_notes", "memory_limit_mb"]


def memory_limit_mb(spec: EndpointSpec) -> float | None:
    """The memory a local replica may use: the definition's ``max``, else its number or ``min``."""
    low, high, _ = resource_bounds(spec.resources.get("memory"))
    return high or low


def local_notes(workload: Workload, no_namespaces: str | None) -> list[str]:
    """The notes of ``workload`` on a local target (``no_namespaces``: why there are none)."""
    spec = workload.endpoint
    notes = [f"runs on this machine's Python {HOST_PYTHON}, in the version's own environment"]
    if no_namespaces is None:
        way_out = (
            "the network through slirp4netns (not this machine's loopback)"
            if shutil.which("slirp4netns")
            else "no network beyond its own loopback (install slirp4netns for more)"
        )
        notes.append(
            f"each replica has a network namespace of its own and listens on port "
            f"{spec.listen_port}; it reaches {way_out}"
        )
    else:
        notes.append(
            f"network namespaces are unavailable here ({no_namespaces}): each replica must "
            "listen on $PORT, a hard-coded port fails"
        )
    memory = memory_limit_mb(spec)
    if memory is not None and no_namespaces is None:
        notes.append(
            f"resources.memory: {memory:g} MB limits the replica's data (RLIMIT_DATA; a local "
            "target has no cgroup to count its resident memory)"
        )
    notes += [
        f"resources.{name} is not honoured on a local target"
        for name in sorted(spec.resources)
        if not (name == "memory" and memory is not None and no_namespaces is None)
    ]
    if spec.node_selector:
        notes.append(
            f"node-selector {spec.node_selector!r} is not honoured: a local target is one machine"
        )
    if spec.tolerations:
        notes.append(
            f"tolerations ({len(spec.tolerations)}) are not honoured: a local target has no "
            "node taints"
        )
    return notes
