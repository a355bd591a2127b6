"""What this router process served, counted on the request path: pure, no I/O.

The proxy tells a :class:`TrafficMeter` when a request starts and ends; every second the
traffic feed (:mod:`dockyard_router.feeds.traffic`) takes the window counted and publishes
it. The average concurrency is the time integral of the requests in flight over the
window, so a burst shorter than a second still weighs what it held. Counting is a few
dictionary operations per request; publishing is never on the request path.
"""

from __future__ import annotations

import bisect
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard_common.traffic import LATENCY_BUCKETS_MS, DeploymentTraffic, EndpointTraffic

__all__ = ["Labels", "TrafficMeter", "router_id"]

Labels = tuple[str, str, str, str]
"""(``owner/project/deployment``, version, endpoint, region)."""


def router_id(worker: int | None) -> str:
    """This process in the feed: host, pid and worker index."""
    suffix = "" if worker is None else f":w{worker}"
    return f"{socket.gethostname()}:{os.getpid()}{suffix}"


@dataclass(slots=True)
class _Counts:
    """One endpoint's window: answers, errors, latencies, and the in-flight integral."""

    since: float
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    area: float = 0.0
    """Requests in flight times seconds, since the window began."""
    changed: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    latency_sum_ms: float = 0.0

    def settle(self, now: float) -> None:
        self.area += self.in_flight * (now - self.changed)
        self.changed = now


class TrafficMeter:
    """Counts requests per (deployment, version, endpoint, region); :meth:`take` ends a
    window and starts the next."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[Labels, _Counts] = {}
        self._window_start = clock()

    def _counts_of(self, labels: Labels, now: float) -> _Counts:
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = _Counts(since=now, changed=now)
        return counts

    def started(self, labels: Labels) -> None:
        """A request for ``labels`` is under way."""
        now = self._clock()
        counts = self._counts_of(labels, now)
        counts.settle(now)
        counts.in_flight += 1

    def released(self, labels: Labels) -> None:
        """A request :meth:`started` while held is no longer counted here (it is forwarded,
        and counted again from there): in flight no more, not an answer."""
        now = self._clock()
        counts = self._counts_of(labels, now)
        counts.settle(now)
        counts.in_flight = max(0, counts.in_flight - 1)

    def finished(self, labels: Labels, status: int, seconds: float, *, failed: bool) -> None:
        """The request :meth:`started` with ``labels`` ended: answered ``status`` after
        ``seconds``; ``failed`` when no upstream answered (an upstream failure)."""
        now = self._clock()
        counts = self._counts_of(labels, now)
        counts.settle(now)
        counts.in_flight = max(0, counts.in_flight - 1)
        counts.requests += 1
        if failed or status >= 500:
            counts.errors += 1
        milliseconds = seconds * 1000.0
        counts.latency[bisect.bisect_left(LATENCY_BUCKETS_MS, milliseconds)] += 1
        counts.latency_sum_ms += milliseconds

    def take(self, router: str, region: str) -> list[DeploymentTraffic]:
        """End the window: one entry per deployment with requests in it or under way.
        Endpoints quiet all window long are forgotten (the table stays bounded)."""
        now = self._clock()
        window_s = max(now - self._window_start, 1e-6)
        self._window_start = now
        by_deployment: dict[str, list[EndpointTraffic]] = {}
        for labels, counts in list(self._counts.items()):
            counts.settle(now)
            if not (counts.requests or counts.in_flight or counts.area):
                del self._counts[labels]
                continue
            deployment, version, endpoint, served_in = labels
            # An endpoint first seen during the window averages over the part it was seen.
            span = max(min(window_s, now - counts.since), 1e-6)
            by_deployment.setdefault(deployment, []).append(
                EndpointTraffic(
                    version=version,
                    endpoint=endpoint,
                    region=served_in,
                    requests=counts.requests,
                    errors=counts.errors,
                    in_flight=counts.in_flight,
                    concurrency=round(counts.area / span, 4),
                    latency_ms=counts.latency,
                    latency_ms_sum=round(counts.latency_sum_ms, 3),
                )
            )
            self._counts[labels] = _Counts(since=now, changed=now, in_flight=counts.in_flight)
        traffic = []
        for deployment, endpoints in by_deployment.items():
            owner, project, name = deployment.split("/", 2)
            traffic.append(
                DeploymentTraffic(
                    owner=owner,
                    project=project,
                    deployment=name,
                    router=router,
                    region=region,
                    window_s=round(window_s, 4),
                    endpoints=endpoints,
                )
            )
        return traffic
