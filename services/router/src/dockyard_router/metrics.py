"""Prometheus metrics of the data plane: requests, latency, upstream errors, alias switches.

A router of several worker processes (:mod:`dockyard_router.workers`) is one scrape target:
its parent gives every worker one directory (``PROMETHEUS_MULTIPROC_DIR``), where
prometheus_client keeps each process's values in a memory-mapped file, and whichever worker
answers ``/metrics`` adds up the files of all of them, those of a worker that was replaced
too, so a counter never goes back. Alias switches are counted by every worker that applied
them. A single router process keeps its values in memory as before.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "METRICS_DIR_ENV", "RouterMetrics"]

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Where the workers of one router keep their metric files (set by their parent)."""

_LABELS = ("deployment", "version", "endpoint", "region")


class RouterMetrics:
    """The router's metrics, in a registry of their own (one per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dockyard_router_requests",
            "Requests proxied, by outcome.",
            [*_LABELS, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dockyard_router_request_seconds",
            "Time from request to the end of the response.",
            _LABELS,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.upstream_errors = Counter(
            "dockyard_router_upstream_errors",
            "Upstreams that could not be reached or timed out.",
            [*_LABELS, "kind"],
            registry=self.registry,
        )
        self.alias_switches = Counter(
            "dockyard_router_alias_switches",
            "Alias changes applied by this process.",
            ["deployment", "alias"],
            registry=self.registry,
        )
        self.unrouted = Counter(
            "dockyard_router_unrouted",
            "Requests for which nothing serves the path, by why (the problem type).",
            ["reason"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "dockyard_router_connections_refused",
            "Client connections answered 503 at once: the process held its maximum.",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format: of every worker of this router."""
        shared = os.environ.get(METRICS_DIR_ENV)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
