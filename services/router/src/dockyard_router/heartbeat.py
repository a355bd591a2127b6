"""This router process's heartbeat: alive, its region, and how far into the alias bucket it
has applied.

The API waits on these to answer an alias change only once every live router serves it.
A heartbeat goes out every second, and at once when the alias watch moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from nats.aio.client import Client as NatsClient

from dockyard_common import RouterHeartbeat, get_logger
from dockyard_common.subjects import ROUTER_HEARTBEAT_SUBJECT

__all__ = ["Heartbeat"]

log = get_logger(__name__)


class Heartbeat:
    """Publishes this process's heartbeats until cancelled."""

    def __init__(self, nc: NatsClient, region: str, every_s: float = 1.0):
        self._nc = nc
        self._region = region
        self._through = 0
        self._every_s = every_s
        self._changed = asyncio.Event()
        self.process = f"{socket.gethostname()}-{os.getpid()}"

    def applied_through(self, revision: int) -> None:
        """Say at once that every alias write up to ``revision`` is applied."""
        if revision > self._through:
            self._through = revision
            self._changed.set()

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._every_s)
            self._changed.clear()
            beat = RouterHeartbeat(
                process=self.process, region=self._region, applied_through=self._through
            )
            try:
                await self._nc.publish(ROUTER_HEARTBEAT_SUBJECT, beat.model_dump_json().encode())
            except Exception as exc:  # NATS away: the next beat tries again
                log.warning("router.heartbeat.failed", error=repr(exc))
