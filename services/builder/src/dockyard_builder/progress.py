"""Build progress as events: bytes done of bytes to do, at most a few per second.

The build runs in a worker thread and reports every chunk. This reporter hands the reports
to the event loop, keeps only the newest per phase while one is being published, and has a
single sender, so a phase's reports go out in order; a phase's last report (done == total)
is always sent. After :meth:`ProgressReporter.drain` it takes no more reports.
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
        self._last_offered: dict[str, float] = {}
        self._pending: dict[str, BuildProgress] = {}
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        """Called from the build thread."""
        now = time.monotonic()
        if done < total and now - self._last_offered.get(phase, 0.0) < self._interval_s:
            return
        self._last_offered[phase] = now
        report = BuildProgress(
            owner=self._version.owner,
            project=self._version.project,
            deployment=self._version.deployment,
            version=self._version.name,
            phase=phase,
            bytes_done=done,
            bytes_total=total,
        )
        self._loop.call_soon_threadsafe(self._offer, report)

    def _offer(self, report: BuildProgress) -> None:
        if self._closed:
            return  # a build thread outliving its reporter (the build was cancelled)
        self._pending[report.phase] = report  # the newest of a phase replaces an unsent one
        if self._sender is None or self._sender.done():
            self._sender = self._loop.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending:
            phase = next(iter(self._pending))
            report = self._pending.pop(phase)
            try:
                await self._publish(report)
            except Exception:
                # Progress is advisory: a lost report must never fail the build.
                log.warning("build.progress.unpublished", exc_info=True)

    async def drain(self) -> None:
        """Send what was handed over, then take no more: progress precedes the outcome."""
        await asyncio.sleep(0)  # let call_soon_threadsafe callbacks already queued run
        self._closed = True
        if self._sender is not None:
            await self._sender
