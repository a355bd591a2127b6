"""The traffic meter: windows, average concurrency and latency buckets, on a fake clock."""

from __future__ import annotations

from dockyard_common.traffic import LATENCY_BUCKETS_MS
from dockyard_router.meter import TrafficMeter

LABELS = ("o/p/d", "v1", "predict", "eu")
OTHER = ("o/p/e", "v2", "predict", "us")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_answers_errors_and_the_average_in_flight() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    meter.started(LABELS)
    meter.started(LABELS)
    clock.now += 0.5
    meter.finished(LABELS, 200, 0.5, failed=False)  # two in flight for half the window
    clock.now += 0.5
    meter.started(OTHER)
    meter.finished(OTHER, 502, 0.003, failed=True)
    [first, second] = sorted(meter.take("r1", "eu"), key=lambda t: t.deployment)
    assert (first.owner, first.project, first.deployment) == ("o", "p", "d")
    assert first.router == "r1" and first.region == "eu" and first.window_s == 1.0
    [endpoint] = first.endpoints
    assert (endpoint.requests, endpoint.errors, endpoint.in_flight) == (1, 0, 1)
    assert endpoint.concurrency == 1.5  # 2 for 0.5 s, then 1 for 0.5 s
    assert endpoint.latency_ms[LATENCY_BUCKETS_MS.index(500.0)] == 1
    [failed] = second.endpoints
    assert (failed.requests, failed.errors, failed.region) == (1, 1, "us")
    assert failed.latency_ms[LATENCY_BUCKETS_MS.index(5.0)] == 1


def test_a_request_still_under_way_is_reported_until_it_ends_then_forgotten() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    meter.started(LABELS)
    clock.now += 1
    meter.take("r1", "eu")
    clock.now += 1
    [held] = meter.take("r1", "eu")  # no answer in the window, one request held all of it
    assert held.endpoints[0].requests == 0 and held.endpoints[0].concurrency == 1.0
    meter.finished(LABELS, 200, 2.0, failed=False)
    clock.now += 1
    [ended] = meter.take("r1", "eu")
    assert ended.endpoints[0].requests == 1 and ended.endpoints[0].in_flight == 0
    clock.now += 1
    assert meter.take("r1", "eu") == []  # a quiet endpoint is dropped


def test_an_error_answer_counts_as_an_error_and_slow_answers_in_the_last_bucket() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    meter.started(LABELS)
    meter.finished(LABELS, 503, 9.0, failed=False)
    clock.now += 1
    [traffic] = meter.take("r1", "eu")
    assert traffic.endpoints[0].errors == 1
    assert traffic.endpoints[0].latency_ms[-1] == 1
