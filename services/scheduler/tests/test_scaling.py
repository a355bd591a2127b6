"""The autoscaler's decisions (KPA-like), on a fake clock: pure, no I/O."""

from __future__ import annotations

from dockyard_common.models import Replicas
from dockyard_scheduler.scaling import LoadHistory, decide

SCALED = Replicas(min=1, max=10, target_concurrency=4)


def feed(history: LoadHistory, start: float, seconds: int, concurrency: float) -> float:
    """One router report per second of ``concurrency``; the time after the last."""
    now = start
    for _ in range(seconds):
        now += 1.0
        history.observe(now, concurrency, requests=int(concurrency * 10), in_flight=0)
    return now


def test_a_steady_load_asks_for_load_over_target_replicas_within_bounds() -> None:
    history = LoadHistory()
    now = feed(history, 1000.0, 60, 12.0)
    assert decide(SCALED, 3, history, now).replicas == 3
    now = feed(history, now, 60, 100.0)
    assert decide(SCALED, 3, history, now).replicas == 10  # max


def test_a_burst_panics_up_at_once_and_never_down_while_panicking() -> None:
    history = LoadHistory()
    now = feed(history, 1000.0, 60, 4.0)
    assert decide(SCALED, 1, history, now).replicas == 1
    now = feed(history, now, 3, 40.0)  # 3 s of a burst: the panic window sees 22 in flight
    decision = decide(SCALED, 1, history, now)
    assert (decision.replicas, decision.reason) == (6, "panic")
    now = feed(history, now, 5, 0.0)  # the burst ends: still panicking, nothing goes
    assert decide(SCALED, 6, history, now).replicas == 6


def test_scale_down_waits_for_the_stable_window_and_a_lull_removes_nothing() -> None:
    history = LoadHistory(stable_s=60, panic_s=6)
    now = feed(history, 1000.0, 60, 16.0)
    assert decide(SCALED, 4, history, now).replicas == 4
    now = feed(history, now, 5, 0.0)  # a 5 s lull: the stable window still wants 4
    assert decide(SCALED, 4, history, now).replicas == 4
    now = feed(history, now, 60, 0.0)  # a whole window quiet: down to min
    decision = decide(SCALED, 4, history, now)
    assert (decision.replicas, decision.reason) == (1, "load")


def test_seconds_no_router_reported_count_as_no_load() -> None:
    history = LoadHistory()
    now = feed(history, 1000.0, 60, 16.0)
    now += 61  # nothing reported for a window
    assert decide(SCALED, 4, history, now).replicas == 1


def test_reports_of_several_routers_in_one_second_add_up() -> None:
    history = LoadHistory()
    for second in range(1, 61):
        for _router in range(4):
            history.observe(1000.0 + second + 0.1, 2.0, requests=5, in_flight=1)
    assert decide(SCALED, 1, history, 1060.2).replicas == 2  # 8 in flight / 4


def test_min_zero_idles_to_zero_after_idle_s_and_a_wake_brings_one_back() -> None:
    idle = Replicas(min=0, max=4, target_concurrency=4, idle_s=30)
    history = LoadHistory()
    now = feed(history, 1000.0, 10, 1.0)
    assert decide(idle, 1, history, now).replicas == 1
    now = feed(history, now, 29, 0.0)
    assert decide(idle, 1, history, now).replicas == 1  # idle 29 s: not yet
    now = feed(history, now, 2, 0.0)
    assert decide(idle, 1, history, now).reason == "idle"
    assert decide(idle, 1, history, now).replicas == 0
    history.woken(now + 1)
    assert decide(idle, 0, history, now + 1).replicas == 1


def test_an_endpoint_never_asked_for_with_min_zero_idles() -> None:
    idle = Replicas(min=0, max=4, idle_s=30)
    assert decide(idle, 1, LoadHistory(), 1000.0).replicas == 0
