"""Announcing restarts on the event stream: a ``platform.service.restarted`` event each.

A restart is queued when it happens and published once NATS is reachable (NATS may be the
process that was restarted), with the msg-id rule: the same restart published twice is
stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import nats.errors
from nats.aio.client import Client as NatsClient

from dockyard_common import EventType, ServiceRestart, TransientError, get_logger
from dockyard_common.runtime import EventPublisher, connect_nats
from dockyard_platform.supervisor import Restarted

__all__ = ["RestartAnnouncer"]

log = get_logger(__name__)

_RETRY_FIRST_S = 0.25
_RETRY_MAX_S = 5.0


class RestartAnnouncer:
    """Publishes the restarts it is told of, in order, until cancelled."""

    def __init__(self, nats_url: str, instance: str, *, source: str) -> None:
        self._nats_url = nats_url
        self._instance = instance
        self._source = source
        self._host = socket.gethostname()
        self._queue: asyncio.Queue[ServiceRestart] = asyncio.Queue()
        self._nc: NatsClient | None = None

    def announce(self, restarted: Restarted) -> None:
        """Queue the event of a restart (``Supervisor``'s ``on_restart``)."""
        self._queue.put_nowait(
            ServiceRestart(
                instance=self._instance,
                host=self._host,
                service=restarted.name,
                exited_pid=restarted.exited_pid,
                pid=restarted.pid,
                exit_code=restarted.exit.code,
                signal=restarted.exit.signal,
                ran_s=round(restarted.ran_s, 3),
                restarts=restarted.restarts,
            )
        )

    async def run(self) -> None:
        """Publish queued restarts, each retried with backoff until NATS takes it."""
        try:
            while True:
                restart = await self._queue.get()
                delay = _RETRY_FIRST_S
                while not await self._publish(restart):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
        finally:
            if self._nc is not None:
                with contextlib.suppress(nats.errors.Error, OSError):
                    await self._nc.close()

    async def _publish(self, restart: ServiceRestart) -> bool:
        try:
            if self._nc is None:
                self._nc = await connect_nats(
                    self._nats_url, name="dockyard-supervisor", connect_timeout=2.0
                )
            publisher = EventPublisher(self._nc.jetstream(), source=self._source)
            await publisher.publish(
                EventType.PLATFORM_SERVICE_RESTARTED,
                restart,
                resource_key=restart.key,
                revision=restart.restarts,
            )
        except (TransientError, nats.errors.Error, OSError) as exc:
            log.warning(
                "platform.event.publish.retry",
                service=restart.service,
                restarts=restart.restarts,
                error=str(exc),
            )
            return False
        log.info("platform.event.published", service=restart.service, restarts=restart.restarts)
        return True
