"""When a failed delivery is tried again, and when it is given up. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RetryPolicy", "next_attempt"]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How failed deliveries are retried (from ``WebhookSettings``)."""

    base_s: float
    max_delay_s: float
    window_s: float


def next_attempt(
    policy: RetryPolicy, attempts: int, queued_at: datetime, now: datetime
) -> float | None:
    """Seconds to wait after ``attempts`` failed attempts, or None: give up.

    The wait doubles from ``base_s`` up to ``max_delay_s``; once the next attempt would
    fall after the retry window (24 h from when the delivery was queued) one last attempt is
    made at its end, and then the delivery is given up.
    """
    delay: float = min(policy.base_s * 2 ** max(attempts - 1, 0), policy.max_delay_s)
    deadline = queued_at + timedelta(seconds=policy.window_s)
    if now + timedelta(seconds=delay) > deadline:
        remaining: float = (deadline - now).total_seconds()
        return remaining if remaining > policy.base_s else None
    return delay
