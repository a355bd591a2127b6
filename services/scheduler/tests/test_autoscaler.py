"""The autoscaler's tick against the reconciler's lock: fake drivers and lock, a fake clock
(a pure unit test of the ordering; the real flow is in tests/test_autoscale.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from dockyard_common.models import Replicas
from dockyard_scheduler.autoscaler import Autoscaler
from dockyard_scheduler.drivers import Drivers
from dockyard_scheduler.reconcile import Reconciler
from dockyard_scheduler.settings import SchedulerSettings

KEY = "acme.demo.web.v1/predict/local-eu"


class FakeDrivers:
    """One workload running ``count`` replicas; what scale() was asked."""

    def __init__(self, replicas: Replicas, count: int) -> None:
        self.count = count
        self.scaled: list[tuple[int, str]] = []
        self._workload = SimpleNamespace(
            endpoint=SimpleNamespace(replicas=replicas), target=SimpleNamespace(region="eu")
        )

    def workload_keys(self) -> set[str]:
        return {KEY}

    def workload(self, key: str) -> Any:
        return self._workload if key == KEY else None

    def replica_count(self, key: str) -> int | None:
        return self.count if key == KEY else None

    async def scale(self, key: str, count: int, reason: str) -> bool:
        self.scaled.append((count, reason))
        self.count = count
        return True


class WakeWhileWaiting:
    """The reconciler's lock, during whose wait a request arrives for the endpoint."""

    def __init__(self) -> None:
        self.autoscaler: Autoscaler | None = None
        self.now = 0.0

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        assert self.autoscaler is not None
        self.autoscaler.history(KEY).woken(self.now)  # a router holds a request for it
        yield


async def test_a_request_while_the_tick_waits_for_the_lock_keeps_the_endpoint_from_idling(
    tmp_path: Path,
) -> None:
    # The decision made before the lock (idle: to 0) undid the wake that came meanwhile.
    drivers = FakeDrivers(Replicas(min=0, max=2, idle_s=2), count=1)
    lock = WakeWhileWaiting()
    lock.now = 100.0
    autoscaler = Autoscaler(
        cast(Drivers, drivers),
        cast(Reconciler, lock),
        SchedulerSettings(data_dir=tmp_path),
        clock=lambda: lock.now,
    )
    lock.autoscaler = autoscaler
    autoscaler.history(KEY).first_seen = 90.0  # idle for 10 s when the tick decides
    await autoscaler.tick()
    assert drivers.scaled == []
    assert drivers.count == 1


async def test_an_idle_endpoint_still_goes_to_zero(tmp_path: Path) -> None:
    drivers = FakeDrivers(Replicas(min=0, max=2, idle_s=2), count=1)
    now = 100.0

    class Plain:
        @contextlib.asynccontextmanager
        async def exclusive(self) -> AsyncIterator[None]:
            yield

    autoscaler = Autoscaler(
        cast(Drivers, drivers),
        cast(Reconciler, Plain()),
        SchedulerSettings(data_dir=tmp_path),
        clock=lambda: now,
    )
    autoscaler.history(KEY).first_seen = 90.0
    await autoscaler.tick()
    assert drivers.scaled == [(0, "idle")]
