"""The reconcile loop: make the targets run what the state of record wants.

Events wake it for one version (:mod:`.events`); a periodic full pass over every version
repairs what a lost event or a crash left behind. What a full pass keeps and removes is the
pure :func:`~dockyard_scheduler.desired.workloads_to_remove`; this module reads the record,
asks the drivers and reports what they could not do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from nats.js import JetStreamContext

from dockyard_common import (
    DockyardError,
    EndpointState,
    Target,
    TargetKind,
    Version,
    WorkloadState,
    get_logger,
)
from dockyard_common.runtime import ResourceStore
from dockyard_common.subjects import TARGETS_BUCKET, VERSIONS_BUCKET, version_key
from dockyard_scheduler.desired import (
    RUNNABLE,
    RecordedVersion,
    Workload,
    desired_workloads,
    workloads_to_keep,
    workloads_to_remove,
)
from dockyard_scheduler.drivers import Drivers, Reporter

__all__ = ["Reconciler"]

log = get_logger(__name__)

_UNSUPPORTED_HINTS = {
    TargetKind.CONTAINER: ": no container engine is configured (set DOCKER_HOST or "
    "DOCKYARD_DOCKER_HOST to a Docker-compatible engine's API)",
}


class Reconciler:
    """Makes every target run the workloads of every built version, through the drivers.

    ``report`` publishes what the reconciler itself observes: a workload it could not start,
    one it removed.
    """

    def __init__(self, js: JetStreamContext, drivers: Drivers, report: Reporter) -> None:
        self._js = js
        self._drivers = drivers
        self._report = report
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """One change at a time: an event's, or a full pass. :meth:`apply` and
        :meth:`remove_version` are called inside it."""
        async with self._lock:
            yield

    async def targets(self) -> dict[str, Target]:
        """Every registered target, by name."""
        store = await ResourceStore.open(self._js, TARGETS_BUCKET, Target)
        return {name: stored.value async for name, stored in store.items()}

    async def run_periodically(self, every_s: float) -> None:
        """A full pass now and every ``every_s`` until cancelled.

        The first pass runs at once: after a restart it adopts what still runs and brings
        back what should; only then are the unadopted leftovers stopped.
        """
        reaped = False
        while True:
            try:
                await self.reconcile_all()
                if not reaped:
                    self._drivers.reap_leftovers()
                    reaped = True
            except Exception:
                # The loop outlives any one pass (NATS away, a driver's bug): the next pass
                # starts from the record again.
                log.exception("reconcile.pass.failed")
            await asyncio.sleep(every_s)

    async def reconcile_all(self) -> None:
        """One full pass over the state of record: start what is missing, remove the unwanted
        (:func:`~dockyard_scheduler.desired.workloads_to_remove` decides which)."""
        async with self._lock:
            started = time.perf_counter()
            versions = await ResourceStore.open(self._js, VERSIONS_BUCKET, Version)
            targets = await self.targets()
            seen: list[RecordedVersion] = []
            async for key, stored in versions.items():
                version = stored.value
                applied: frozenset[str] = frozenset()
                if version.status in RUNNABLE:
                    applied = frozenset(w.key for w in await self.apply(version, targets))
                seen.append(RecordedVersion(key, version.status, applied))
            running = self._drivers.workload_keys()
            for workload_key in workloads_to_remove(seen, running):
                workload = self._drivers.workload(workload_key)
                await self._drivers.remove(workload_key)
                log.info("workload.removed", key=workload_key)
                if workload is not None:
                    await self._report_stopped(
                        workload.version, workload.endpoint.name, workload.target.name, targets
                    )
            log.info(
                "reconcile.pass.done",
                seconds=round(time.perf_counter() - started, 3),
                workloads=len(workloads_to_keep(seen, running)),
            )

    async def apply(
        self, version: Version, targets: dict[str, Target], *, report_unsupported: bool = False
    ) -> list[Workload]:
        """Ask each driver to run the version's workloads; those it runs.

        A workload its driver cannot start is reported failed with the reason and the others
        still start; one of a kind no driver here runs is reported failed too when
        ``report_unsupported`` (an event asked for this version, rather than a pass).
        """
        workloads, missing = desired_workloads(version, targets)
        for target in missing:
            log.warning("workload.target.unknown", version=version.name, target=target)
        applied = []
        for workload in workloads:
            driver = self._drivers.for_kind(workload.target.kind)
            if driver is None:
                # This scheduler has no driver for the kind: say so instead of guessing.
                log.warning(
                    "workload.kind.unsupported", key=workload.key, kind=workload.target.kind.value
                )
                if report_unsupported:
                    await self._report(
                        workload.observed(
                            WorkloadState.FAILED,
                            reason=f"this scheduler runs no {workload.target.kind.value} targets"
                            + _UNSUPPORTED_HINTS.get(workload.target.kind, ""),
                        )
                    )
                continue
            try:
                changed = await driver.ensure(workload)
            except DockyardError as exc:
                log.warning("workload.apply.failed", key=workload.key, error=str(exc))
                await self._report(
                    workload.observed(WorkloadState.FAILED, reason=f"could not start: {exc}")
                )
                continue
            applied.append(workload)
            # An unchanged workload is the steady state: at info it would be a line per
            # workload per pass.
            (log.info if changed else log.debug)(
                "workload.applied", key=workload.key, result="created" if changed else "unchanged"
            )
        return applied

    async def remove_version(self, version: Version) -> None:
        """Remove every workload of the version, each reported stopped as it goes."""
        key = version_key(version.owner, version.project, version.deployment, version.name)
        targets: dict[str, Target] | None = None
        for workload_key in sorted(self._drivers.workload_keys()):
            if workload_key.startswith(f"{key}/"):
                await self._drivers.remove(workload_key)
                _, endpoint, target = workload_key.rsplit("/", 2)
                targets = targets if targets is not None else await self.targets()
                await self._report_stopped(version, endpoint, target, targets)

    async def _report_stopped(
        self, version: Version, endpoint: str, target: str, targets: dict[str, Target]
    ) -> None:
        region = targets[target].region if target in targets else target
        await self._report(
            EndpointState(
                owner=version.owner,
                project=version.project,
                deployment=version.deployment,
                version=version.name,
                endpoint=endpoint,
                target=target,
                region=region,
                state=WorkloadState.STOPPED,
            )
        )
