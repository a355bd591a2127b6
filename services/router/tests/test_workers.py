"""When the router's parent starts a worker again, and when it gives up."""

from __future__ import annotations

from dockyard_router.workers import FIRST_DELAY_S, MAX_DELAY_S, STEADY_S, restart_delay


def test_a_worker_that_never_served_on_its_first_start_ends_the_router() -> None:
    assert restart_delay(first_run=True, served=False, ran_s=0.2, last_delay_s=None) is None


def test_a_worker_that_served_is_started_again_soon() -> None:
    # However early it ended: it got its port and served.
    assert restart_delay(first_run=True, served=True, ran_s=0.5, last_delay_s=None) == (
        FIRST_DELAY_S
    )


def test_later_starts_back_off_while_failing_and_reset_after_a_steady_run() -> None:
    delays = []
    delay = None
    for _ in range(10):
        delay = restart_delay(first_run=False, served=False, ran_s=1.0, last_delay_s=delay)
        delays.append(delay)
    assert delays[:3] == [FIRST_DELAY_S, FIRST_DELAY_S * 2, FIRST_DELAY_S * 4]
    assert delays[-1] == MAX_DELAY_S
    after_steady = restart_delay(
        first_run=False, served=True, ran_s=STEADY_S, last_delay_s=MAX_DELAY_S
    )
    assert after_steady == FIRST_DELAY_S
