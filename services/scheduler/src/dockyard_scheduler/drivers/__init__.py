"""Target drivers: make a target run the workloads the reconciler asks for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from dockyard_common import EndpointState
from dockyard_scheduler.desired import Workload

__all__ = ["Driver", "Reporter"]

Reporter = Callable[[EndpointState], Awaitable[None]]
"""What a driver calls whenever a workload's observed state changes."""


class Driver(Protocol):
    """The seam between the reconciler and a kind of target."""

    async def ensure(self, workload: Workload) -> bool:
        """Make the workload run; False when it already ran as asked (nothing changed)."""
        ...

    async def remove(self, key: str) -> bool:
        """Stop and forget a workload; False when there was none."""
        ...

    def workload_keys(self) -> set[str]:
        """The keys of the workloads the driver runs."""
        ...

    def workload(self, key: str) -> Workload | None:
        """The workload running under ``key``."""
        ...

    def reap_leftovers(self) -> int:
        """Stop what a previous scheduler left running; how many it stopped."""
        ...

    async def close(self) -> None:
        """Stop everything the driver started."""
        ...
