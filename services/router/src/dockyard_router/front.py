"""The client side of the data plane: HTTP/1.1 connections parsed with httptools.

Each request becomes an :class:`Exchange` handed to the proxy. Its body is streamed: chunks
are held only until an upstream connection is attached, then written through as they come;
the response is written to the client as the upstream sends it. Requests pipelined on one
connection are answered in order. Reading pauses while a peer cannot keep up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

from dockyard_router.exchange import Exchange, problem_bytes

__all__ = ["FrontConnection", "close_idle_connections"]

_HEAD_LIMIT = 64 * 1024
"""Bytes of request line and headers a client may send."""

Handler = Callable[[Exchange], Coroutine[Any, Any, None]]


class FrontConnection(asyncio.Protocol):
    """One client connection: parse requests, run each through the proxy in order."""

    def __init__(self, handle: Handler, connections: set[FrontConnection]) -> None:
        self._handle = handle
        self._connections = connections
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self.last_active = time.monotonic()
        self._parsing: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._current: asyncio.Task[None] | None = None
        self._reading_paused = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._connections.discard(self)
        if self._current is not None:
            self._current.cancel()
        for exchange in (*self._queue, self._parsing):
            if exchange is not None and exchange.upstream is not None:
                exchange.upstream.abort()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(501, "Not Implemented", "not-implemented", "protocol upgrades")
        except httptools.HttpParserError:
            if self._head_bytes > _HEAD_LIMIT:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    "headers-too-large",
                    f"the request line and headers exceed {_HEAD_LIMIT} bytes",
                )
            else:
                self._refuse(400, "Bad Request", "bad-request", "malformed HTTP request")

    def _refuse(self, status: int, reason: str, slug: str, detail: str) -> None:
        if self.transport is not None and self._current is None:
            self.transport.write(problem_bytes(status, reason, slug, detail, False))
        self.close()

    def pause_reading(self) -> None:
        """Stop reading from the client (a peer is slower)."""
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the client again."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # The client reads slower than the upstream sends: stop reading the upstream.
        upstream = self._queue[0].upstream if self._queue else None
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self._queue[0].upstream if self._queue else None
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Send bytes to the client."""
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close once everything written has gone out."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    @property
    def busy(self) -> bool:
        """A request is being answered."""
        return self._current is not None

    def close_when_idle(self) -> None:
        """Shutting down: close now if no request is under way, else after its response."""
        self.closing = True
        if self._current is None and self._parsing is None:
            self.close()

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._count_head(len(name) + len(value))

    def _count_head(self, size: int) -> None:
        # The parser sets no bound: without one a client could grow this list forever.
        self._head_bytes += size
        if self._head_bytes > _HEAD_LIMIT:
            raise ValueError("request head too large")  # stops the parser: answered 431

    def on_headers_complete(self) -> None:
        parser = self._parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._headers,
            parser.should_keep_alive(),
            parser.get_http_version() == "1.1",
        )
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                exchange.has_body = value.strip() not in (b"0", b"")
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                exchange.has_body = exchange.chunked_request = True
            elif lower == b"expect" and value.lower() == b"100-continue":
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._parsing = exchange
        self._queue.append(exchange)
        if self._current is None:
            self._start_next()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.request_body(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.request_done()
            self._parsing = None

    # -- running exchanges in order --

    def _start_next(self) -> None:
        if self._queue:
            self._current = asyncio.get_running_loop().create_task(self._run(self._queue[0]))

    async def _run(self, exchange: Exchange) -> None:
        try:
            await self._handle(exchange)
        finally:
            self._queue.popleft()
            self._current = None
            # An answer before the whole request body came leaves the connection unusable.
            unread = not exchange.body_done and self._parsing is exchange
            if unread or exchange.close_after() or (self.closing and not self._queue):
                self.close()
            elif self.transport is not None:
                self._start_next()


async def close_idle_connections(
    connections: set[FrontConnection], idle_s: float, every_s: float
) -> None:
    """Close client connections that sent nothing for ``idle_s`` while no request of theirs
    was being answered (idle keep-alives, stalled request heads), until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        quiet_since = time.monotonic() - idle_s
        for connection in list(connections):
            if not connection.busy and connection.last_active < quiet_since:
                connection.close()
