"""The request metrics feed: this router process's traffic, published once a second.

Every second :func:`publish_traffic` takes the window the :class:`TrafficMeter` counted and
publishes one ``router.traffic.observed`` event per deployment that had requests in it (or
still has requests under way) on the ``DOCKYARD_TRAFFIC`` stream: the scheduler's
autoscaler reads them, and so may any subscriber.

A window that cannot be published (NATS away) is dropped, not queued: the feed is a rate,
and an autoscaler acting on minutes-old traffic would act wrongly.

The :class:`Waker` rides on the same connection: the proxy calls it for an endpoint scaled
to zero it holds requests of, and it publishes the wake-up for the scheduler (a core NATS
message: the proxy asks again every second while it holds requests, so one lost is no harm).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import nats.errors
from nats.aio.client import Client as NatsClient

from dockyard_common import DockyardError, get_logger
from dockyard_common.runtime import EventPublisher
from dockyard_common.subjects import AUTOSCALE_WAKE_SUBJECT, TRAFFIC_EVENT_TYPE
from dockyard_common.traffic import WakeRequest
from dockyard_router.meter import TrafficMeter

__all__ = ["PUBLISH_EVERY_S", "Waker", "publish_traffic"]

log = get_logger(__name__)

PUBLISH_EVERY_S = 1.0


class Waker:
    """Publishes the proxy's wake-ups once NATS is connected (dropped before: the proxy asks
    again)."""

    def __init__(self) -> None:
        self._nc: NatsClient | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def attach(self, nc: NatsClient) -> None:
        """The connection to publish on."""
        self._nc = nc

    def __call__(self, request: WakeRequest) -> None:
        if self._nc is None:
            log.warning("wake.dropped", reason="NATS not connected yet")
            return
        task = asyncio.create_task(self._send(self._nc, request))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _send(nc: NatsClient, request: WakeRequest) -> None:
        try:
            await nc.publish(AUTOSCALE_WAKE_SUBJECT, request.model_dump_json().encode())
        except nats.errors.Error as exc:
            log.warning("wake.dropped", error=str(exc))


async def publish_traffic(nc: NatsClient, meter: TrafficMeter, router: str, region: str) -> None:
    """Until cancelled: every second, publish the meter's window on the traffic stream."""
    publisher = EventPublisher(nc.jetstream(), source="router", attempts=1)
    windows = itertools.count(1)
    started = int(time.time() * 1000)  # a process restarted with the same pid: new ids
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at = max(next_at + PUBLISH_EVERY_S, loop.time())
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        window = next(windows)
        for traffic in meter.take(router, region):
            key = f"{'/'.join(traffic.scope)}@{router}:{started}"
            try:
                await publisher.publish(
                    TRAFFIC_EVENT_TYPE, traffic, resource_key=key, revision=window
                )
            except (DockyardError, nats.errors.Error, TimeoutError) as exc:
                log.warning("traffic.publish.dropped", deployment=key, error=str(exc))
