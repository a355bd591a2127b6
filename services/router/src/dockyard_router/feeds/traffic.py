"""The request metrics feed: this router process's traffic, published once a second.

Every second :func:`publish_traffic` takes the window the :class:`TrafficMeter` counted and
publishes one ``router.traffic.observed`` event per deployment that had requests in it (or
still has requests under way) on the ``DOCKYARD_TRAFFIC`` stream: the scheduler's
autoscaler reads them, and so may any subscriber.

A window that cannot be published (NATS away) is dropped, not queued: the feed is a rate,
and an autoscaler acting on minutes-old traffic would act wrongly.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import nats.errors
from nats.aio.client import Client as NatsClient

from dockyard_common import DockyardError, get_logger
from dockyard_common.runtime import EventPublisher
from dockyard_common.subjects import TRAFFIC_EVENT_TYPE
from dockyard_router.meter import TrafficMeter

__all__ = ["PUBLISH_EVERY_S", "publish_traffic"]

log = get_logger(__name__)

PUBLISH_EVERY_S = 1.0


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
