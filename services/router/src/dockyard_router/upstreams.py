"""Keep-alive HTTP/1.1 connections to upstreams, bounded per upstream, with passive health.

An upstream is ``http://host:port``, or ``unix:/path`` for a replica reached through a Unix
socket (a local target's replica in a network namespace of its own).

A connection carries one request at a time. The proxy writes the request head and body
to it and receives the response through a :class:`ResponseSink`, chunk by chunk as it
arrives (httptools parses; nothing is buffered whole). An upstream that refused a
connection or dropped one before answering is set aside for ``eject_s`` seconds: requests
go to its other replicas, or fall back to it only when it is the last one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Protocol, cast

import httptools

__all__ = [
    "UNIX_SCHEME",
    "ResponseSink",
    "UpstreamConnection",
    "UpstreamPools",
    "UpstreamUnavailable",
]

UNIX_SCHEME = "unix:"
"""The prefix of an upstream reached through a Unix socket: ``unix:/run/replica.sock``."""


class UpstreamUnavailable(Exception):
    """No connection to an upstream could be made (refused, unreachable, or the pool is full
    for longer than the connect timeout)."""


class ResponseSink(Protocol):
    """What receives an upstream's response (the client's exchange)."""

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The status line and headers arrived."""

    def response_body(self, chunk: bytes) -> None:
        """A piece of the body arrived (already de-chunked)."""

    def flush(self) -> None:
        """Send on what the last read produced."""

    def resume_request(self) -> None:
        """The upstream takes request body bytes again."""

    def response_done(self) -> None:
        """The response is complete."""

    def upstream_lost(self, answered: bool) -> None:
        """The connection dropped; ``answered`` tells whether a response head came first."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to one upstream."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._sink: ResponseSink | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_only = False
        self._answered = False
        self._informational = False
        self.reused = False
        self.keep_alive = True
        self.paused = False
        """The upstream takes no more bytes for now: the client's body waits."""

    # -- used by the proxy --

    def start(self, head: bytes, sink: ResponseSink, head_only: bool) -> None:
        """Send a request head; its response goes to ``sink``."""
        self._sink = sink
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._answered = False
        self._head_only = head_only
        if self.transport is not None:
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        """Send more of the request body."""
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection (a client left, a timeout): it is not reused."""
        self._sink = None
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return  # bytes while idle: the connection is broken; connection_lost follows
        sink = self._sink
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()  # not HTTP we can pass on: the client gets a 502 or a cut response
            if sink is not None:
                sink.upstream_lost(self._answered)
            return
        if sink is not None:
            sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)
        sink, self._sink = self._sink, None
        if sink is None:
            return
        if self._answered and self._parser is not None and self._close_delimited():
            sink.response_done()  # a body without length ends with the connection
        else:
            sink.upstream_lost(self._answered)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._sink is not None:
            self._sink.resume_request()

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._parser is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True  # 103 and the like: not forwarded
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._answered = True
        if self._sink is not None:
            self._sink.response_head(status, self._reason, self._headers)
        if self._head_only or status in (204, 304):
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._finish()

    def _close_delimited(self) -> bool:
        return not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )

    def _finish(self) -> None:
        sink, self._sink = self._sink, None
        self._parser = None
        if sink is None:
            return
        if self.keep_alive:
            self._pool.release(self)
        elif self.transport is not None:
            self.transport.close()
        sink.response_done()


class _Pool:
    """The connections to one upstream (``host:port``, or a Unix socket's ``path``)."""

    def __init__(self, host: str, port: int, limit: int, path: str | None = None) -> None:
        self.host, self.port, self.limit, self.path = host, port, limit, path
        self.idle: deque[UpstreamConnection] = deque()
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.down_until = 0.0

    def release(self, connection: UpstreamConnection) -> None:
        connection.reused = True
        self.idle.append(connection)
        self._wake()

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):  # it was busy, not idle
            self.idle.remove(connection)
        self.open -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class UpstreamPools:
    """Every upstream's pool, created on first use."""

    def __init__(self, limit: int, connect_timeout_s: float, eject_s: float) -> None:
        self._limit = limit
        self._connect_timeout_s = connect_timeout_s
        self._eject_s = eject_s
        self._pools: dict[str, _Pool] = {}

    def _pool(self, upstream: str) -> _Pool:
        pool = self._pools.get(upstream)
        if pool is None:
            if upstream.startswith(UNIX_SCHEME):
                path = upstream.removeprefix(UNIX_SCHEME)
                pool = self._pools[upstream] = _Pool("localhost", 0, self._limit, path)
                return pool
            host, _, port = upstream.partition("//")[2].rstrip("/").rpartition(":")
            pool = self._pools[upstream] = _Pool(host.strip("[]"), int(port or 80), self._limit)
        return pool

    def healthy(self, upstream: str, now: float) -> bool:
        """False while the upstream is set aside after a failure."""
        pool = self._pools.get(upstream)
        return pool is None or pool.down_until <= now

    def set_aside(self, upstream: str) -> None:
        """Send no new request to ``upstream`` for a while (it failed a connection)."""
        self._pool(upstream).down_until = time.monotonic() + self._eject_s

    async def acquire(self, upstream: str, *, fresh: bool = False) -> UpstreamConnection:
        """An idle connection to ``upstream``, or a new one within the limit (always a new one
        when ``fresh``: after an idle one turned out closed, the others may be too)."""
        pool = self._pool(upstream)
        while True:
            while pool.idle and not fresh:
                connection = pool.idle.pop()
                if connection.transport is not None and not connection.transport.is_closing():
                    return connection
            if pool.open < pool.limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self._connect_timeout_s)
            except TimeoutError:
                raise UpstreamUnavailable(
                    f"{upstream}: all {pool.limit} connections busy"
                ) from None
        pool.open += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if pool.path is not None:
                    _, protocol = await loop.create_unix_connection(
                        lambda: UpstreamConnection(pool), pool.path
                    )
                else:
                    _, protocol = await loop.create_connection(
                        lambda: UpstreamConnection(pool), pool.host, pool.port
                    )
        except BaseException as exc:  # cancelled too (the client left): the slot is free again
            pool.open -= 1
            pool._wake()
            if isinstance(exc, OSError | TimeoutError):
                raise UpstreamUnavailable(f"{upstream}: {exc!r}") from exc
            raise
        return protocol

    def close(self) -> None:
        """Close every idle connection (busy ones close when their exchange ends)."""
        for pool in self._pools.values():
            while pool.idle:
                connection = pool.idle.pop()
                if connection.transport is not None:
                    connection.transport.close()
