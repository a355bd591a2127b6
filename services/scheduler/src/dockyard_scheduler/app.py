"""The scheduler's wiring: a driver per kind of target, the reconcile loop over them, the
events it consumes and publishes, the autoscaler and the logs requests it answers."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from dockyard_common import TargetKind
from dockyard_common.runtime import EventPublisher, run_consumer
from dockyard_common.subscriptions import SCHEDULE_CONSUMER
from dockyard_scheduler.autoscaler import Autoscaler
from dockyard_scheduler.drivers import Driver, Drivers, Reporter
from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.drivers.kubernetes import KubernetesDriver
from dockyard_scheduler.drivers.local import LocalDriver
from dockyard_scheduler.events import EventHandler, Reports
from dockyard_scheduler.logs import serve_logs
from dockyard_scheduler.reconcile import Reconciler
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["drivers_for", "run"]


def drivers_for(settings: SchedulerSettings, report: Reporter) -> Drivers:
    """A driver per kind of target this scheduler runs: local and Kubernetes always,
    containers where an engine is configured (or Docker's usual socket exists)."""
    by_kind: dict[TargetKind, Driver] = {
        TargetKind.LOCAL: LocalDriver(settings, report),
        TargetKind.KUBERNETES: KubernetesDriver(settings, report),
    }
    if settings.container_engine_url is not None:
        by_kind[TargetKind.CONTAINER] = ContainerDriver(settings, report)
    return Drivers(by_kind)


async def run(nc: NatsClient, settings: SchedulerSettings) -> None:
    """Consume the scheduling events, run a full pass periodically and answer logs requests,
    until cancelled; then close every driver (which stops what it started, unless
    ``keep_replicas_on_exit``). What a previous scheduler left running is adopted by the
    first pass."""
    js = nc.jetstream()
    reports = Reports(EventPublisher(js, source=f"{settings.event_source}/scheduler"))
    drivers = drivers_for(settings, reports.endpoint)
    reconciler = Reconciler(js, drivers, reports.endpoint)
    handler = EventHandler(reconciler, reports)
    logs = await serve_logs(nc, drivers, reconciler.targets, within_s=settings.logs_deadline_s)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_consumer(js, SCHEDULE_CONSUMER, handler.on_event))
            tasks.create_task(reconciler.run_periodically(settings.full_pass_every_s))
            tasks.create_task(Autoscaler(drivers, reconciler, settings).run(nc))
    finally:
        await logs.close()
        await drivers.close()
