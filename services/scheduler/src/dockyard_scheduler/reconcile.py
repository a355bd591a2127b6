"""The scheduler's reconcile loop: events wake it, a periodic full pass repairs what they missed."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_common import (
    CloudEvent,
    ConsumerSpec,
    EndpointState,
    EventPublisher,
    EventType,
    ResourceStore,
    Target,
    TargetKind,
    Version,
    VersionStatus,
    WorkloadState,
    get_logger,
    run_consumer,
)
from dockyard_common.subjects import TARGETS_BUCKET, VERSIONS_BUCKET, version_key
from dockyard_scheduler.desired import Workload, desired_workloads
from dockyard_scheduler.drivers import Driver, Drivers
from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.drivers.kubernetes import KubernetesDriver
from dockyard_scheduler.drivers.local import LocalDriver
from dockyard_scheduler.drivers.local.rollout import event_type
from dockyard_scheduler.logs import serve_logs
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["SCHEDULE_CONSUMER", "Scheduler"]

log = get_logger(__name__)

SCHEDULE_CONSUMER = ConsumerSpec(
    durable="scheduler",
    # version.starting: a stopped version is to run again, as after its build.
    event_types=[EventType.VERSION_BUILT, EventType.VERSION_STOPPING, EventType.VERSION_STARTING],
)

_UNSUPPORTED_HINTS = {
    TargetKind.CONTAINER: ": no container engine is configured (set DOCKER_HOST or "
    "DOCKYARD_DOCKER_HOST to a Docker-compatible engine's API)",
}

_STOPPED = (VersionStatus.STOPPING, VersionStatus.STOPPED)

# Versions whose workloads should run (a version failed in rollout keeps what runs).
_RUNNABLE = (
    VersionStatus.BUILT,
    VersionStatus.DEPLOYING,
    VersionStatus.READY,
    VersionStatus.FAILED,
)


class Scheduler:
    """Makes every local target run the workloads of every built version."""

    def __init__(self, js: JetStreamContext, settings: SchedulerSettings) -> None:
        self._js = js
        self._settings = settings
        self._events = EventPublisher(js, source=f"{settings.event_source}/scheduler")
        by_kind: dict[TargetKind, Driver] = {
            TargetKind.LOCAL: LocalDriver(settings, self._report),
            TargetKind.KUBERNETES: KubernetesDriver(settings, self._report),
        }
        if settings.container_engine_url is not None:
            by_kind[TargetKind.CONTAINER] = ContainerDriver(settings, self._report)
        self._drivers = Drivers(by_kind)
        self._lock = asyncio.Lock()
        self._reported: dict[str, EndpointState] = {}
        """The last state reported per workload key (to tell ``endpoint.scaled`` apart)."""

    async def run(self, full_pass_every_s: float = 30.0) -> None:
        """Consume ``version.built`` (and ``version.starting``), run a full pass periodically
        and answer logs requests, until cancelled. What a previous scheduler left running is
        adopted by the first pass."""
        nc: NatsClient = self._js._nc  # the connection JetStream runs on
        logs = await serve_logs(
            nc, self._drivers, self._targets, within_s=self._settings.logs_deadline_s
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(run_consumer(self._js, SCHEDULE_CONSUMER, self._on_event))
                tasks.create_task(self._periodic(full_pass_every_s))
        finally:
            await logs.close()
            await self._drivers.close()

    async def _on_event(self, event: CloudEvent, message: Msg) -> None:
        version = event.data_as(Version)
        key = version_key(version.owner, version.project, version.deployment, version.name)
        async with self._lock:
            if event.type == EventType.VERSION_STOPPING:
                await self._stop(version, key, event.resourcerevision or "0")
                return
            versions = await ResourceStore.open(self._js, VERSIONS_BUCKET, Version)
            current = await versions.get(key)
            if current is not None and current.value.status in _STOPPED:
                return  # stopped while it was building (or again since its start)
            await self._apply(version, await self._targets(), report_unsupported=True)

    async def _stop(self, version: Version, key: str, revision: str) -> None:
        """Remove every workload of the version, then report it stopped."""
        for workload_key in sorted(self._drivers.workload_keys()):
            if workload_key.startswith(f"{key}/"):
                await self._drivers.remove(workload_key)
                _, endpoint, target = workload_key.rsplit("/", 2)
                await self._report_stopped(version, endpoint, target)
        stopped = version.model_copy(update={"status": VersionStatus.STOPPED})
        await self._events.publish(
            EventType.VERSION_STOPPED,
            stopped,
            resource_key=key,
            revision=revision,
        )
        log.info("version.stopped", key=key)

    async def _report_stopped(self, version: Version, endpoint: str, target: str) -> None:
        targets = await self._targets()
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

    async def _periodic(self, every_s: float) -> None:
        # The first pass runs at once: after a restart it adopts what still runs and
        # brings back what should; only then are the unadopted leftovers stopped.
        reaped = False
        while True:
            try:
                await self.reconcile_all()
                if not reaped:
                    self._drivers.reap_leftovers()
                    reaped = True
            except Exception:
                log.exception("reconcile.pass.failed")
            await asyncio.sleep(every_s)

    async def reconcile_all(self) -> None:
        """One full pass over the state of record: start what is missing, remove the unwanted.

        Only workloads of stopped or deleted versions are removed: a version whose record
        still says pending or building may already run (its ``version.built`` event can
        arrive before the API records it), and is left alone.
        """
        async with self._lock:
            started = time.perf_counter()
            versions = await ResourceStore.open(self._js, VERSIONS_BUCKET, Version)
            targets = await self._targets()
            keep: set[str] = set()
            async for key, stored in versions.items():
                version = stored.value
                if version.status in _RUNNABLE:
                    keep.update(w.key for w in await self._apply(version, targets))
                elif version.status not in _STOPPED:
                    keep.update(k for k in self._drivers.workload_keys() if k.startswith(f"{key}/"))
            for workload_key in sorted(self._drivers.workload_keys() - keep):
                workload = self._drivers.workload(workload_key)
                await self._drivers.remove(workload_key)
                log.info("workload.removed", key=workload_key)
                if workload is not None:
                    await self._report_stopped(
                        workload.version, workload.endpoint.name, workload.target.name
                    )
            log.info(
                "reconcile.pass.done",
                seconds=round(time.perf_counter() - started, 3),
                workloads=len(keep),
            )

    async def _targets(self) -> dict[str, Target]:
        store = await ResourceStore.open(self._js, TARGETS_BUCKET, Target)
        return {name: stored.value async for name, stored in store.items()}

    async def _apply(
        self, version: Version, targets: dict[str, Target], *, report_unsupported: bool = False
    ) -> list[Workload]:
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
                        self._state_of(
                            workload,
                            WorkloadState.FAILED,
                            f"this scheduler runs no {workload.target.kind.value} targets"
                            + _UNSUPPORTED_HINTS.get(workload.target.kind, ""),
                        )
                    )
                continue
            try:
                changed = await driver.ensure(workload)
            except Exception as exc:
                # One workload failing to start must not stop the others.
                log.exception("workload.apply.failed", key=workload.key)
                await self._report(
                    self._state_of(workload, WorkloadState.FAILED, f"could not start: {exc}")
                )
                continue
            applied.append(workload)
            # An unchanged workload is the steady state: at info it would be a line per
            # workload per pass.
            (log.info if changed else log.debug)(
                "workload.applied", key=workload.key, result="created" if changed else "unchanged"
            )
        return applied

    @staticmethod
    def _state_of(workload: Workload, state: WorkloadState, reason: str) -> EndpointState:
        return workload.observed(state, reason=reason)

    async def _report(self, state: EndpointState) -> None:
        key = version_key(state.owner, state.project, state.deployment, state.version)
        workload_key = f"{key}/{state.endpoint}/{state.target}"
        kind = event_type(self._reported.get(workload_key), state)
        await self._events.publish(
            kind,
            state,
            resource_key=workload_key,
            revision=f"{state.state.value}-{int(state.observed_at.timestamp() * 1e6)}",
        )
        if state.state is WorkloadState.STOPPED:
            self._reported.pop(workload_key, None)
        else:
            self._reported[workload_key] = state
