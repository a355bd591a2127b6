"""Knowing when a write is live: every live process that acts on its bucket has applied it.

Router processes (the alias bucket) and webhook dispatchers (the subscriptions) beat every
second on NATS with the revision they have applied; one that has not beaten for a few
seconds is taken as gone. The API's alias and webhook writes wait here.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, nc: NatsClient, subject: str, *, alive_for_s: float = 3.0) -> None:
        self._nc = nc
        self._alive_for_s = alive_for_s
        self._subject = subject
        self._seen: dict[str, tuple[float, ProcessHeartbeat]] = {}
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        """Follow the heartbeats until cancelled."""
        subscription = await self._nc.subscribe(self._subject, cb=self._on_beat)
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

    def _lagging(self, revision: int) -> tuple[int, list[str]]:
        now = time.monotonic()
        live = {p: beat for p, (at, beat) in self._seen.items() if now - at <= self._alive_for_s}
        for gone in set(self._seen) - set(live):
            del self._seen[gone]
        return len(live), sorted(p for p, b in live.items() if b.applied_through < revision)

    async def wait_applied(self, revision: int, within_s: float) -> Outcome:
        """Wait until every live process applied the write at ``revision`` (or the bound)."""
        started = time.monotonic()
        deadline = started + within_s
        async with self._changed:
            while True:
                processes, lagging = self._lagging(revision)
                remaining = deadline - time.monotonic()
                if not lagging or remaining <= 0:
                    return Outcome(time.monotonic() - started, processes, lagging)
                try:
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
                except TimeoutError:
                    continue
