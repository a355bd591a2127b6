"""When to start a crashed process again, and when to stop trying: pure decisions, no I/O.

The embedded platform supervises its processes as an init system does. A process that ends
on its own is started again after a delay that doubles while it keeps crashing (and starts
short again once it has run a while); more than ``crash_loop_restarts`` restarts within
``crash_loop_window_s`` is a crash loop, and the supervisor gives up on it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = [
    "Exit",
    "GiveUp",
    "Restart",
    "RestartHistory",
    "RestartPolicy",
    "decide_restart",
]


@dataclass(frozen=True)
class RestartPolicy:
    """How a supervisor restarts: backoff bounds and what counts as a crash loop."""

    first_delay_s: float = 0.1
    max_delay_s: float = 5.0
    steady_s: float = 30.0
    """A process that ran this long before it ended is restarted after the first delay."""
    crash_loop_restarts: int = 5
    crash_loop_window_s: float = 60.0


@dataclass(frozen=True)
class Exit:
    """How a process ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: str | None

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        """From ``Popen.returncode``: negative for a signal."""
        if returncode >= 0:
            return cls(code=returncode, signal=None)
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return cls(code=None, signal=name)

    def describe(self) -> str:
        """``exited with code 1`` or ``killed by SIGKILL``, for people."""
        if self.signal is not None:
            return f"killed by {self.signal}"
        return f"exited with code {self.code}"


@dataclass(frozen=True)
class RestartHistory:
    """What a supervisor remembers of one process's restarts."""

    restarted_at: tuple[float, ...] = ()
    """When it was restarted, oldest first (a monotonic clock)."""
    last_delay_s: float | None = None

    def after(self, restart: Restart, now: float) -> RestartHistory:
        """The history once ``restart`` is made at ``now`` (times outside any window kept
        short: only the window's worth matters)."""
        return RestartHistory((*self.restarted_at[-63:], now), restart.delay_s)


@dataclass(frozen=True)
class Restart:
    """Start the process again after ``delay_s``; it is the ``count``-th restart in the
    crash-loop window."""

    delay_s: float
    count: int


@dataclass(frozen=True)
class GiveUp:
    """Stop restarting: the process crash-loops. ``reason`` says so for people."""

    reason: str


def decide_restart(
    policy: RestartPolicy, history: RestartHistory, *, ran_s: float, now: float
) -> Restart | GiveUp:
    """Whether (and after how long) to restart a process that ended on its own after
    running ``ran_s`` seconds, given its earlier restarts. Side-effect free."""
    recent = [at for at in history.restarted_at if now - at < policy.crash_loop_window_s]
    if len(recent) >= policy.crash_loop_restarts:
        return GiveUp(
            f"it ended {len(recent) + 1} times within {policy.crash_loop_window_s:g} s "
            f"(restarted {len(recent)} times): a crash loop"
        )
    if history.last_delay_s is None or ran_s >= policy.steady_s:
        delay = policy.first_delay_s
    else:
        delay = min(history.last_delay_s * 2, policy.max_delay_s)
    return Restart(delay_s=delay, count=len(recent) + 1)
