"""Knowing when a write is live: every live process that acts on its bucket has applied it.

Router processes (the alias bucket) and webhook dispatchers (the subscriptions) beat every
second on NATS with the revision they have applied; one that has not beaten for a few
seconds is taken as gone. The API's alias and webhook writes wait here.

Until the watch has listened for a whole beat interval (after the API starts, or its NATS
connection came back), it cannot know every live process: a write waits that long at most
(within its bound) before it takes "no one lags" for an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import ValidationError

from dockyard_common import ProcessHeartbeat, get_logger

__all__ = ["AppliedWatch", "Outcome"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a write spread: how long it took, and who had not applied it."""

    seconds: float
    processes: int
    lagging: list[str]


class AppliedWatch:
    """The live processes beating on one subject and what each has applied."""

    def __init__(
        self,
        nc: NatsClient,
        subject: str,
        *,
        alive_for_s: float = 3.0,
        all_heard_after_s: float = 1.5,
    ) -> None:
        self._nc = nc
        self._alive_for_s = alive_for_s
        self._all_heard_after_s = all_heard_after_s
        """A beat interval and a margin: every live process has beaten once in that time."""
        self._subject = subject
        self._seen: dict[str, tuple[float, ProcessHeartbeat]] = {}
        self._changed = asyncio.Condition()
        self._listening_since: float | None = None
        self._reconnects = 0

    async def run(self) -> None:
        """Follow the heartbeats until cancelled."""
        subscription = await self._nc.subscribe(self._subject, cb=self._on_beat)
        self._reconnects = self._nc.stats["reconnects"]
        self._listening_since = time.monotonic()
        try:
            await asyncio.Event().wait()
        finally:
            await subscription.unsubscribe()

    async def _on_beat(self, message: Msg) -> None:
        try:
            beat = ProcessHeartbeat.model_validate_json(message.data)
        except ValidationError:
            log.warning("heartbeat.malformed", subject=self._subject)
            return
        self._seen[beat.process] = (time.monotonic(), beat)
        async with self._changed:
            self._changed.notify_all()

    def _all_heard(self, now: float) -> bool:
        """Whether every live process has had time to be heard since listening began."""
        if self._nc.stats["reconnects"] != self._reconnects:
            # Beats sent while the connection was down were lost: listen a while again.
            self._reconnects = self._nc.stats["reconnects"]
            self._listening_since = now
        since = self._listening_since
        return since is not None and now - since >= self._all_heard_after_s

    def _lagging(self, revision: int, now: float) -> tuple[int, list[str]]:
        live = {p: beat for p, (at, beat) in self._seen.items() if now - at <= self._alive_for_s}
        for gone in set(self._seen) - set(live):
            del self._seen[gone]
        return len(live), sorted(p for p, b in live.items() if b.applied_through < revision)

    def live(self) -> int:
        """How many processes have beaten lately."""
        return self._lagging(0, time.monotonic())[0]

    async def wait_applied(self, revision: int, within_s: float) -> Outcome:
        """Wait until every live process applied the write at ``revision`` (or the bound)."""
        started = time.monotonic()
        deadline = started + within_s
        async with self._changed:
            while True:
                now = time.monotonic()
                processes, lagging = self._lagging(revision, now)
                remaining = deadline - now
                if (not lagging and self._all_heard(now)) or remaining <= 0:
                    return Outcome(now - started, processes, lagging)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.25)):
                        await self._changed.wait()
