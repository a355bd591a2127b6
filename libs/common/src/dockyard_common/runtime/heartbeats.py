"""A process's heartbeat on core NATS: alive, and how far into a KV bucket it has applied.

Processes that act on a bucket's writes (router processes on aliases, webhook dispatchers
on subscriptions) beat every second, and at once when what they have applied moves on;
the API answers a write of that bucket once every live process has applied it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from nats.aio.client import Client as NatsClient

from dockyard_common.log import get_logger
from dockyard_common.models import ProcessHeartbeat

__all__ = ["Heartbeat"]

log = get_logger(__name__)


def _plain_beat(process: str, applied_through: int) -> ProcessHeartbeat:
    return ProcessHeartbeat(process=process, applied_through=applied_through)


class Heartbeat:
    """Publishes this process's heartbeats on ``subject`` until cancelled: the first at once,
    then every ``every_s`` and whenever what it has applied moves on.

    ``beat(process, applied_through)`` makes one (a router's says its region too).
    """

    def __init__(
        self,
        nc: NatsClient,
        subject: str,
        beat: Callable[[str, int], ProcessHeartbeat] = _plain_beat,
        *,
        every_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._subject = subject
        self._beat = beat
        self._through = 0
        self._every_s = every_s
        self._changed = asyncio.Event()
        self.process = f"{socket.gethostname()}-{os.getpid()}"

    def applied_through(self, revision: int) -> None:
        """Say at once that every write up to ``revision`` is applied."""
        if revision > self._through:
            self._through = revision
            self._changed.set()

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            self._changed.clear()
            beat = self._beat(self.process, self._through)
            try:
                await self._nc.publish(self._subject, beat.model_dump_json().encode())
            except Exception as exc:  # NATS away: the next beat tries again
                log.warning("heartbeat.failed", subject=self._subject, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every_s):
                    await self._changed.wait()
