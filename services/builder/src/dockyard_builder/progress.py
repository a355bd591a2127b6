"""Build progress as events: bytes done of bytes to do, at most a few per second.

The build runs in a worker thread and reports every chunk; this reporter hands the reports
to the event loop, keeps only the newest while one is being published, and publishes at
most every ``interval_s`` per phase, plus the phase's last report (done == total).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from dockyard_common import BuildProgress, Version, get_logger

__all__ = ["ProgressReporter"]

log = get_logger(__name__)


class ProgressReporter:
    """Turns ``(phase, done, total)`` calls from a build thread into published events."""

    def __init__(
        self,
        version: Version,
        publish: Callable[[BuildProgress], Awaitable[None]],
        loop: asyncio.AbstractEventLoop,
        interval_s: float = 0.5,
    ) -> None:
        self._version = version
        self._publish = publish
        self._loop = loop
        self._interval_s = interval_s
        self._last_sent: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, phase: str, done: int, total: int) -> None:
        """Called from the build thread."""
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self._last_sent.get(phase, 0.0) < self._interval_s:
            return
        self._last_sent[phase] = now
        report = BuildProgress(
            owner=self._version.owner,
            project=self._version.project,
            deployment=self._version.deployment,
            version=self._version.name,
            phase=phase,
            bytes_done=done,
            bytes_total=total,
        )
        self._loop.call_soon_threadsafe(self._start, report)

    def _start(self, report: BuildProgress) -> None:
        task = self._loop.create_task(self._send(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, report: BuildProgress) -> None:
        try:
            await self._publish(report)
        except Exception:
            # Progress is advisory: a lost report must never fail the build.
            log.warning("build.progress.unpublished", exc_info=True)

    async def drain(self) -> None:
        """Wait for the reports already handed over, so they precede the outcome event."""
        await asyncio.sleep(0)  # let call_soon_threadsafe callbacks create their tasks
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
