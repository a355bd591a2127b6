"""The traffic charts: the routers' request metrics (``DOCKYARD_TRAFFIC``) folded into
per-minute series per version and per region, and the replicas serving each version (from
the endpoints' events), drawn as SVG polylines. Pure, no I/O.

Every router process reports what it served each second; a minute's point sums the reports
whose window ended in it, over every router process. Latency percentiles come from the
summed histograms (the bucket's upper bound, as Prometheus' ``histogram_quantile`` does
without interpolation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dockyard_common.traffic import LATENCY_BUCKETS_MS, DeploymentTraffic, EndpointTraffic

__all__ = [
    "Chart",
    "ReplicaChange",
    "Series",
    "TrafficCharts",
    "replica_chart",
    "traffic_charts",
]

WIDTH = 600
HEIGHT = 140
SERIES_CLASSES = 6


@dataclass
class _Point:
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def add(self, traffic: EndpointTraffic) -> None:
        self.requests += traffic.requests
        self.errors += traffic.errors
        self.latency = [a + b for a, b in zip(self.latency, traffic.latency_ms, strict=True)]

    def quantile(self, q: float) -> float | None:
        total = sum(self.latency)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        bounds = (*LATENCY_BUCKETS_MS, LATENCY_BUCKETS_MS[-1] * 2)
        for bound, count in zip(bounds, self.latency, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return LATENCY_BUCKETS_MS[-1] * 2  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Series:
    """One line of a chart: its name, an SVG class, the points' polyline and its last value."""

    name: str
    css: str
    points: str
    last: str


@dataclass(frozen=True)
class Chart:
    """One chart: title, the largest value drawn (its y axis), its lines."""

    title: str
    unit: str
    top: str
    series: list[Series]


@dataclass(frozen=True)
class ReplicaChange:
    """An endpoint of a version on a target now serves from ``replicas`` replicas."""

    at: datetime
    version: str
    endpoint: str
    target: str
    replicas: int


@dataclass(frozen=True)
class TrafficCharts:
    """The charts of a deployment's traffic page."""

    requests: int
    """Requests answered over the whole period, every version and region."""
    errors: int
    by_version: list[Chart]
    by_region: list[Chart]


Metric = Callable[[_Point, float], float | None]


def _rate(point: _Point, width_s: float) -> float | None:
    return point.requests / width_s


def _error_rate(point: _Point, width_s: float) -> float | None:
    return 100.0 * point.errors / point.requests if point.requests else None


def _p50(point: _Point, width_s: float) -> float | None:
    return point.quantile(0.50)


def _p99(point: _Point, width_s: float) -> float | None:
    return point.quantile(0.99)


_METRICS: tuple[tuple[str, str, Metric], ...] = (
    ("Request rate", "req/s", _rate),
    ("Errors", "%", _error_rate),
    ("Latency p50", "ms", _p50),
    ("Latency p99", "ms", _p99),
)


def traffic_charts(
    reports: list[DeploymentTraffic],
    now: datetime,
    span: timedelta = timedelta(hours=1),
    buckets: int = 60,
) -> TrafficCharts:
    """The charts of ``reports`` over the ``span`` before ``now``, in ``buckets`` points."""
    width_s = span.total_seconds() / buckets
    start = now - span
    by_version: dict[str, list[_Point]] = {}
    by_region: dict[str, list[_Point]] = {}
    requests = errors = 0
    for report in reports:
        index = int((report.window_end - start).total_seconds() // width_s)
        if not 0 <= index < buckets:
            continue
        for traffic in report.endpoints:
            requests += traffic.requests
            errors += traffic.errors
            for key, table in ((traffic.version, by_version), (traffic.region, by_region)):
                series = table.setdefault(key, [_Point() for _ in range(buckets)])
                series[index].add(traffic)
    return TrafficCharts(
        requests=requests,
        errors=errors,
        by_version=[
            _chart(title, unit, by_version, metric, width_s) for title, unit, metric in _METRICS
        ],
        by_region=[
            _chart(title, unit, by_region, metric, width_s) for title, unit, metric in _METRICS
        ],
    )


def _chart(
    title: str, unit: str, table: dict[str, list[_Point]], metric: Metric, width_s: float
) -> Chart:
    values = {
        name: [metric(point, width_s) for point in points] for name, points in sorted(table.items())
    }
    return _draw(title, unit, values)


def replica_chart(
    changes: list[ReplicaChange],
    now: datetime,
    span: timedelta = timedelta(hours=1),
    buckets: int = 60,
) -> Chart:
    """Replicas serving each version over the ``span`` before ``now``: at each point, the
    sum over its endpoints and targets of the replicas the latest change (oldest first,
    earlier ones included) reported."""
    width = span / buckets
    start = now - span
    current: dict[tuple[str, str, str], int] = {}
    values: dict[str, list[float | None]] = {}
    pending = sorted(changes, key=lambda change: change.at)
    index = 0
    for bucket in range(buckets):
        end = start + width * (bucket + 1)
        while index < len(pending) and pending[index].at <= end:
            change = pending[index]
            current[(change.version, change.endpoint, change.target)] = change.replicas
            index += 1
        for (version, _, _), replicas in current.items():
            series = values.setdefault(version, [0.0] * buckets)
            series[bucket] = (series[bucket] or 0.0) + replicas
    shown = {name: series for name, series in sorted(values.items()) if any(series)}
    return _draw("Replicas", "", shown)


def _draw(title: str, unit: str, values: dict[str, list[float | None]]) -> Chart:
    top = max((v for series in values.values() for v in series if v is not None), default=0.0)
    scale = top if top > 0 else 1.0
    lines = []
    for index, (name, series) in enumerate(values.items()):
        step = WIDTH / max(len(series) - 1, 1)
        points = " ".join(
            f"{i * step:.1f},{HEIGHT - (v or 0.0) / scale * (HEIGHT - 4):.1f}"
            for i, v in enumerate(series)
        )
        last = next((v for v in reversed(series) if v is not None), None)
        lines.append(
            Series(
                name=name,
                css=f"s{index % SERIES_CLASSES}",
                points=points,
                last="—" if last is None else f"{last:.3g} {unit}".rstrip(),
            )
        )
    return Chart(title=title, unit=unit, top=f"{top:.3g}", series=lines)
