"""Target drivers: make a target run the workloads the reconciler asks for.

What every kind shares lives here: the :class:`Driver` protocol (and the optional
:class:`LogSource` and :class:`Scalable`), :class:`Drivers` (one driver per kind, seen as one), the
:data:`Reporter` a driver tells observed states through, and :func:`report_until_published`.
Each kind is a subpackage (``local``, ``container``, ``kubernetes``) that imports no other;
``fake`` holds a driver for unit tests only, and ``layouts`` the OCI-layout lookup of the
two kinds that read the builder's layouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from dockyard_common import DockyardError, EndpointState, TargetKind, get_logger
from dockyard_common.logs import ReplicaLogs
from dockyard_scheduler.desired import Workload

__all__ = [
    "Driver",
    "Drivers",
    "LogSource",
    "Reporter",
    "Scalable",
    "publish_then_retire",
    "report_until_published",
]

log = get_logger(__name__)

Reporter = Callable[[EndpointState], Awaitable[None]]
"""What a driver calls whenever a workload's observed state changes. It raises a
:class:`~dockyard_common.DockyardError` when the report could not be published (NATS away):
the driver tries again."""


async def report_until_published(report: Reporter, state: EndpointState, key: str) -> None:
    """Report ``state``, trying again with backoff (0.5 s doubling to 10 s) until it is
    published: a NATS outage must not end a replica's supervision."""
    delay = 0.5
    while True:
        try:
            await report(state)
            return
        except DockyardError as exc:
            log.warning("workload.report.retry", key=key, error=str(exc), in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def publish_then_retire(
    publish: Callable[[], Awaitable[None]],
    drain_s: float,
    retire: Callable[[], Awaitable[None]] | None,
) -> None:
    """A scale-down's order: report the smaller set of replicas, give the routers
    ``drain_s`` to apply it, then ``retire`` those that left (at once when cancelled)."""
    try:
        await publish()
        if retire is not None:
            await asyncio.sleep(drain_s)
    finally:
        if retire is not None:
            await retire()


class Driver(Protocol):
    """The seam between the reconciler and a kind of target.

    A failure the driver foresees (a target that cannot be reached, a workload that cannot
    run there) is raised as a :class:`~dockyard_common.DockyardError` whose message a person
    can act on; the driver translates its client's exceptions into those where it wraps it.
    """

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
        """Stop what a previous scheduler left running and the first full pass did not
        adopt; how many it stopped."""
        ...

    async def close(self) -> None:
        """Stop everything the driver started."""
        ...


@runtime_checkable
class LogSource(Protocol):
    """A driver that can tell a workload's recent log lines (an optional capability).

    Reading them may mean calling a cluster or an engine: it never blocks the event loop, and
    a target that cannot be read raises (the caller turns that into the target's ``error``).
    """

    async def logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        """The last ``tail`` lines of each replica of the workload ``key``; [] when none ran."""
        ...


@runtime_checkable
class Scalable(Protocol):
    """A driver whose workloads' replica count the scheduler's autoscaler sets (an optional
    capability: a driver without it runs the fixed count it was given)."""

    def replica_count(self, key: str) -> int | None:
        """How many replicas the workload ``key`` runs or starts; None when it cannot be
        scaled now (not running, or still being set up)."""
        ...

    async def scale(self, key: str, count: int, reason: str) -> bool:
        """Run ``count`` replicas of ``key`` (``reason`` goes into its report); False when
        nothing changed. A replica stopped must first leave the reported upstreams, so
        that no request is sent to it once it stops: its drain counts from the publication
        of that report. Called under the reconciler's lock: a report that has to wait for
        NATS is published in the background, not awaited here."""
        ...


class Drivers:
    """One driver per kind of target, seen by the reconciler as the union of what they run.

    Workload keys are unique across drivers (a key names its target), so a key belongs to
    exactly one driver.
    """

    def __init__(self, by_kind: dict[TargetKind, Driver]) -> None:
        self._by_kind = by_kind

    def for_kind(self, kind: TargetKind) -> Driver | None:
        """The driver of a kind of target, None when this scheduler runs none."""
        return self._by_kind.get(kind)

    def _owner_of(self, key: str) -> Driver | None:
        for driver in self._by_kind.values():
            if key in driver.workload_keys():
                return driver
        return None

    async def remove(self, key: str) -> bool:
        """Stop and forget a workload, whichever driver runs it; False when none does."""
        driver = self._owner_of(key)
        return False if driver is None else await driver.remove(key)

    def workload_keys(self) -> set[str]:
        """The keys of every workload any driver runs."""
        return set().union(*(driver.workload_keys() for driver in self._by_kind.values()))

    def workload(self, key: str) -> Workload | None:
        """The workload running under ``key``, whichever driver runs it."""
        driver = self._owner_of(key)
        return None if driver is None else driver.workload(key)

    def replica_count(self, key: str) -> int | None:
        """How many replicas ``key`` runs, when its driver can scale it now; else None."""
        driver = self._owner_of(key)
        return driver.replica_count(key) if isinstance(driver, Scalable) else None

    async def scale(self, key: str, count: int, reason: str) -> bool:
        """Run ``count`` replicas of ``key``; False when nothing changed or none can."""
        driver = self._owner_of(key)
        return await driver.scale(key, count, reason) if isinstance(driver, Scalable) else False

    def reap_leftovers(self) -> int:
        """Stop what a previous scheduler left running and nothing adopted, on every driver."""
        return sum(driver.reap_leftovers() for driver in self._by_kind.values())

    async def close(self) -> None:
        """Close every driver, even when one fails to."""
        errors: list[Exception] = []
        for driver in self._by_kind.values():
            try:
                await driver.close()
            except Exception as exc:  # not swallowed: raised together once all are closed
                errors.append(exc)
        if errors:
            raise ExceptionGroup("closing drivers failed", errors)
