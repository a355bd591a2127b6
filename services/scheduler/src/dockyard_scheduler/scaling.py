"""How many replicas an endpoint should run, from the request load the routers saw: pure
decisions, no I/O, the clock passed in.

The rule is Knative's KPA's, on the routers' feed (``router.traffic.observed``): keep the
requests in flight per replica near ``replicas.target_concurrency``.

- The load is the average concurrency summed over every router process, per second; a
  second no router reported is a second without requests.
- The **stable** window (60 s by default) decides normally: desired = ceil(average
  concurrency over the window / target), between ``min`` and ``max``. Scaling down needs the
  whole window to agree, so a lull of a few seconds removes nothing.
- The **panic** window (6 s) catches a burst: when its average asks for at least twice the
  replicas running, the endpoint panics for a stable window: it scales up to what the
  panic window asks at once and never down while panicking.
- With ``min: 0`` an endpoint with no request for ``idle_s`` goes to zero (``idle``); any
  request seen brings it back to at least one.

A canary is a version of its own, with its own feed entries: its replicas follow its share
of the traffic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from dockyard_common.models import Replicas

__all__ = ["Decision", "LoadHistory", "decide"]


@dataclass(frozen=True)
class Decision:
    """How many replicas to run, and why (``load``, ``panic``, ``idle``)."""

    replicas: int
    reason: str


@dataclass
class LoadHistory:
    """One endpoint's load on one target: concurrency per second, and when it was last
    asked for. Seconds older than the stable window are forgotten."""

    stable_s: float = 60.0
    panic_s: float = 6.0
    seconds: deque[tuple[int, float]] = field(default_factory=deque)
    """(whole second, concurrency summed over the routers' reports of it), oldest first."""
    first_seen: float | None = None
    last_request: float | None = None
    panic_until: float | None = None

    def observe(self, now: float, concurrency: float, *, requests: int, in_flight: int) -> None:
        """One router's report of one window ending ``now``."""
        if self.first_seen is None:
            self.first_seen = now
        if requests or in_flight or concurrency:
            self.last_request = now
        second = int(now)
        if self.seconds and self.seconds[-1][0] == second:
            self.seconds[-1] = (second, self.seconds[-1][1] + concurrency)
        elif not self.seconds or self.seconds[-1][0] < second:
            self.seconds.append((second, concurrency))
        else:  # a report of a second already passed: add it where it belongs
            held = dict(self.seconds)
            held[second] = held.get(second, 0.0) + concurrency
            self.seconds = deque(sorted(held.items()))
        self._forget(now)

    def woken(self, now: float) -> None:
        """A request is held for this endpoint (a router asked to wake it)."""
        self.last_request = now
        if self.first_seen is None:
            self.first_seen = now

    def average(self, now: float, window_s: float) -> float:
        """Average concurrency over the last ``window_s`` seconds (or since first seen)."""
        self._forget(now)
        if self.first_seen is None:
            return 0.0
        span = min(window_s, max(now - self.first_seen, 1.0))
        since = now - span
        total = sum(value for second, value in self.seconds if second > since)
        return total / max(span, 1.0)

    def _forget(self, now: float) -> None:
        while self.seconds and self.seconds[0][0] < now - self.stable_s - 1:
            self.seconds.popleft()


def decide(replicas: Replicas, current: int, history: LoadHistory, now: float) -> Decision:
    """The replica count ``replicas`` asks for, running ``current`` now."""
    target = replicas.target_concurrency
    floor = max(replicas.min, 1)
    if replicas.min == 0:
        last = history.last_request if history.last_request is not None else history.first_seen
        if last is None or now - last >= replicas.idle_s:
            return Decision(0, "idle")
    stable = math.ceil(history.average(now, history.stable_s) / target - 1e-9)
    panic = math.ceil(history.average(now, history.panic_s) / target - 1e-9)
    if current > 0 and panic >= 2 * current:
        history.panic_until = now + history.stable_s
    panicking = history.panic_until is not None and now < history.panic_until
    if panicking:
        wanted, reason = max(current, panic, stable), "panic"
    else:
        history.panic_until = None
        wanted, reason = stable, "load"
    return Decision(min(max(wanted, floor), replicas.max), reason)
