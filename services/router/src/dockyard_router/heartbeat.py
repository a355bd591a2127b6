"""This router process's heartbeat: alive, its region, and the alias revisions it applied.

The API waits on these to answer an alias change only once every live router serves it.
A heartbeat goes out every second, and at once when an alias is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from nats.aio.client import Client as NatsClient

from dockyard_common import RouterHeartbeat, get_logger
from dockyard_common.subjects import ROUTER_HEARTBEAT_SUBJECT
from dockyard_router.tables import RouteTable

__all__ = ["Heartbeat"]

log = get_logger(__name__)


class Heartbeat:
    """Publishes this process's heartbeats until cancelled."""

    def __init__(self, nc: NatsClient, table: RouteTable, region: str, every_s: float = 1.0):
        self._nc = nc
        self._table = table
        self._region = region
        self._every_s = every_s
        self._changed = asyncio.Event()
        self.process = f"{socket.gethostname()}-{os.getpid()}"

    def applied(self) -> None:
        """Say at once that the tables changed (called when an alias is applied)."""
        self._changed.set()

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._every_s)
            self._changed.clear()
            beat = RouterHeartbeat(
                process=self.process, region=self._region, applied=dict(self._table.alias_revisions)
            )
            try:
                await self._nc.publish(ROUTER_HEARTBEAT_SUBJECT, beat.model_dump_json().encode())
            except Exception as exc:  # NATS away: the next beat tries again
                log.warning("router.heartbeat.failed", error=repr(exc))
