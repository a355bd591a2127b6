"""The autoscaler: reads the routers' request metrics feed and sets each endpoint's
replica count on each target, through the drivers that can (:class:`~.drivers.Scalable`).

Every ``router.traffic.observed`` event (stream ``DOCKYARD_TRAFFIC``, read from its newest
message on: old traffic says nothing about now) adds its endpoints' concurrency to the
:class:`~.scaling.LoadHistory` of the workload running that version's endpoint in the
region the requests were served in. Once a second each autoscaled workload (``replicas``
``min < max`` with ``metric: concurrency``; ``metric: cpu`` is left to a Kubernetes HPA)
gets the count :func:`~.scaling.decide` asks for, one change at a time with the reconciler's
changes. The driver reports the new state, with ``desired_replicas`` and ``scaled_because``,
through the usual report → record → fact flow (``endpoint.scaled``).

An endpoint with ``min: 0`` idle for ``idle_s`` goes to zero (reported ``idle``). A router
holding a request for it publishes a :class:`~dockyard_common.traffic.WakeRequest` on
``AUTOSCALE_WAKE_SUBJECT``: the endpoint in that region gets one replica at once, not at the
next tick, and counts as asked for (it will not idle again for ``idle_s``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from dockyard_common import DockyardError, get_logger
from dockyard_common.subjects import (
    AUTOSCALE_WAKE_SUBJECT,
    TRAFFIC_STREAM,
    TRAFFIC_SUBJECT_PREFIX,
    version_key,
)
from dockyard_common.traffic import DeploymentTraffic, WakeRequest
from dockyard_scheduler.drivers import Drivers
from dockyard_scheduler.reconcile import Reconciler
from dockyard_scheduler.scaling import LoadHistory, decide
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["Autoscaler"]

log = get_logger(__name__)


class Autoscaler:
    """Load histories per workload, fed by the traffic stream; decisions applied each tick."""

    def __init__(
        self,
        drivers: Drivers,
        reconciler: Reconciler,
        settings: SchedulerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._drivers = drivers
        self._reconciler = reconciler
        self._settings = settings
        self._clock = clock
        self._histories: dict[str, LoadHistory] = {}

    def history(self, key: str) -> LoadHistory:
        """The load history of workload ``key`` (made empty when first asked for)."""
        history = self._histories.get(key)
        if history is None:
            history = self._histories[key] = LoadHistory(
                stable_s=self._settings.autoscale_stable_s,
                panic_s=self._settings.autoscale_panic_s,
                # Idle time counts from when the autoscaler first saw it, not from never.
                first_seen=self._clock(),
            )
        return history

    def workload_keys_in(
        self, owner: str, project: str, deployment: str, version: str, endpoint: str, region: str
    ) -> list[str]:
        """The workloads of one version's endpoint running in ``region``."""
        prefix = f"{version_key(owner, project, deployment, version)}/{endpoint}/"
        found = []
        for key in self._drivers.workload_keys():
            if key.startswith(prefix):
                workload = self._drivers.workload(key)
                if workload is not None and workload.target.region == region:
                    found.append(key)
        return found

    def observe(self, traffic: DeploymentTraffic) -> None:
        """Add one router process's window to the workloads it speaks of."""
        now = self._clock()
        for entry in traffic.endpoints:
            for key in self.workload_keys_in(
                traffic.owner,
                traffic.project,
                traffic.deployment,
                entry.version,
                entry.endpoint,
                entry.region,
            ):
                self.history(key).observe(
                    now, entry.concurrency, requests=entry.requests, in_flight=entry.in_flight
                )

    async def tick(self) -> None:
        """Decide every autoscaled workload's count, and apply those that changed."""
        now = self._clock()
        running = self._drivers.workload_keys()
        for key in list(self._histories):
            if key not in running:
                del self._histories[key]
        for key in sorted(running):
            workload = self._drivers.workload(key)
            if workload is None:
                continue
            replicas = workload.endpoint.replicas
            if not replicas.autoscaled or replicas.metric != "concurrency":
                continue
            current = self._drivers.replica_count(key)
            if current is None:
                continue
            history = self.history(key)
            decision = decide(replicas, current, history, now)
            if decision.replicas == current:
                continue
            try:
                async with self._reconciler.exclusive():
                    # Decided again under the lock: a wake (or a replacement) while this
                    # waited for it would be undone by the decision made before.
                    if self._drivers.workload(key) is not workload:
                        continue
                    current = self._drivers.replica_count(key)
                    if current is None:
                        continue
                    decision = decide(replicas, current, history, self._clock())
                    if decision.replicas != current:
                        # Returns once changed: the driver publishes its report outside
                        # the lock (a NATS outage must not stall the reconciler).
                        await self._drivers.scale(key, decision.replicas, decision.reason)
            except DockyardError as exc:
                log.warning("autoscale.failed", key=key, error=str(exc))

    async def wake(self, request: WakeRequest) -> int:
        """Start one replica of an idle endpoint a router holds a request for; how many
        workloads were woken (0: none idle there, or already starting)."""
        woken = 0
        for key in self.workload_keys_in(
            request.owner,
            request.project,
            request.deployment,
            request.version,
            request.endpoint,
            request.region,
        ):
            self.history(key).woken(self._clock())
            async with self._reconciler.exclusive():
                if self._drivers.replica_count(key) == 0:
                    await self._drivers.scale(key, 1, "wake")
                    woken += 1
        return woken

    async def run(self, nc: NatsClient) -> None:
        """Until cancelled: follow the traffic stream and the wake-ups, and decide every
        second."""
        js = nc.jetstream()

        async def on_wake(msg: Msg) -> None:
            try:
                request = WakeRequest.model_validate_json(msg.data)
            except ValidationError as exc:
                log.warning("autoscale.wake.unreadable", error=str(exc))
                return
            try:
                woken = await self.wake(request)
            except DockyardError as exc:
                log.warning("autoscale.wake.failed", request=request.model_dump(), error=str(exc))
                return
            if woken:
                log.info("autoscale.woken", **request.model_dump(), workloads=woken)

        async def on_message(msg: Msg) -> None:
            try:
                traffic = DeploymentTraffic.model_validate(json.loads(msg.data)["data"])
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                log.warning("autoscale.traffic.unreadable", subject=msg.subject, error=str(exc))
                return
            self.observe(traffic)

        waking = await nc.subscribe(AUTOSCALE_WAKE_SUBJECT, cb=on_wake)
        subscription = await js.subscribe(
            f"{TRAFFIC_SUBJECT_PREFIX}.>",
            stream=TRAFFIC_STREAM,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        try:
            while True:
                await asyncio.sleep(self._settings.autoscale_every_s)
                try:
                    await self.tick()
                except Exception:  # the loop outlives one tick's bug
                    log.exception("autoscale.tick.failed")
        finally:
            await subscription.unsubscribe()
            await waking.unsubscribe()
