"""The client side of the data plane: HTTP/1.1 connections parsed with httptools.

Each request becomes an :class:`Exchange` handed to the proxy. Its body is streamed: chunks
are held only until an upstream connection is attached, then written through as they come;
the response is written to the client as the upstream sends it. Requests pipelined on one
connection are answered in order. Reading pauses while a peer cannot keep up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

from dockyard_router.upstreams import UpstreamConnection

__all__ = ["Exchange", "FrontConnection", "close_idle_connections", "problem_bytes"]

_REPLAY_LIMIT = 64 * 1024
"""Request bodies up to this size are kept until answered, so a retry can send them again."""
_BUFFER_LIMIT = 1024 * 1024
"""Body bytes held before an upstream is attached; past it, reading from the client pauses."""
_NO_BODY = frozenset({204, 304})
_HEAD_LIMIT = 64 * 1024
"""Bytes of request line and headers a client may send."""

Handler = Callable[["Exchange"], Coroutine[Any, Any, None]]


def problem_bytes(status: int, reason: str, slug: str, detail: str, keep_alive: bool) -> bytes:
    """A whole problem+json (RFC 9457) response."""
    body = json.dumps(
        {
            "type": f"https://dockyard.dev/problems/{slug}",
            "title": reason,
            "status": status,
            "detail": detail,
        }
    ).encode()
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
        b"Content-Length: %d\r\nConnection: %s\r\n\r\n%s"
        % (status, reason.encode(), len(body), connection, body)
    )


class Exchange:
    """One request from a client and the response going back to it."""

    def __init__(
        self,
        front: FrontConnection,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        http11: bool,
    ) -> None:
        self.front = front
        self.method = method
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.http11 = http11
        self.chunked_request = False
        self.has_body = False
        self.body_done = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.replay: list[bytes] | None = []
        self._replay_bytes = 0
        self.timed_out = False
        self.sent = False
        self.upstream: UpstreamConnection | None = None
        self.started = False
        """The response head went to the client: an error can no longer be answered."""
        self.finished: asyncio.Future[bool] | None = None
        self._chunked_response = False
        self._close_after = False
        self.status = 0
        self.extra_head = b""
        self._out: list[bytes] = []
        """Headers the proxy adds to the response (X-Dockyard-*), ready to write."""

    # -- request body (from the client's connection) --

    def request_body(self, chunk: bytes) -> None:
        """A piece of the request body arrived from the client."""
        if self.chunked_request:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self.replay is not None:
            self.replay.append(chunk)
            self._replay_bytes += len(chunk)
            if self._replay_bytes > _REPLAY_LIMIT:
                self.replay = None
        if self.upstream is not None:
            self.upstream.write(chunk)
            if self.upstream.paused:
                self.front.pause_reading()
        else:
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
            if self._pending_bytes > _BUFFER_LIMIT:
                self.front.pause_reading()

    def request_done(self) -> None:
        """The client sent the whole request."""
        self.body_done = True
        if self.chunked_request:
            self.request_body_raw(b"0\r\n\r\n")

    def request_body_raw(self, data: bytes) -> None:
        """Bytes of the request body framing (no re-chunking)."""
        if self.replay is not None:
            self.replay.append(data)
        if self.upstream is not None:
            self.upstream.write(data)
        else:
            self._pending.append(data)

    def attach(self, upstream: UpstreamConnection, head: bytes) -> asyncio.Future[bool]:
        """Send the request on ``upstream``: the head, then the body so far. The future
        says True once the response is complete, False if the upstream dropped it."""
        self.upstream = upstream
        finished = self.finished = asyncio.get_running_loop().create_future()
        upstream.start(head, self, self.method == b"HEAD")
        if self.sent:  # a second try: the body from its start
            for chunk in self.replay or ():
                upstream.write(chunk)
        else:
            for chunk in self._pending:
                upstream.write(chunk)
        self.sent = True
        self._pending.clear()
        self._pending_bytes = 0
        self.front.resume_reading()
        return finished

    def replayable(self) -> bool:
        """Whether the whole body sent so far is still held (a retry can send it again)."""
        return not self.has_body or not self.sent or self.replay is not None

    # -- response (ResponseSink, from the upstream connection) --

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Write the status line and headers, with the framing the client can read."""
        self.status = status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        framed = status in _NO_BODY or self.method == b"HEAD"
        for name, value in headers:
            lower = name.lower()
            if lower in _RESPONSE_HOP_BY_HOP:
                continue  # the framing is ours to choose for the client
            if lower == b"content-length":
                framed = True
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(self.extra_head)
        if not framed:
            if self.http11:
                self._chunked_response = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self._close_after = True
        if not self.keep_alive or self._close_after or self.front.closing:
            self._close_after = True
            lines.append(b"Connection: close\r\n\r\n")
        else:
            lines.append(b"\r\n")
        self.started = True
        self._out.append(b"".join(lines))

    def response_body(self, chunk: bytes) -> None:
        """Pass a piece of the body on."""
        if self._chunked_response:
            self._out.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self._out.append(chunk)

    def flush(self) -> None:
        """Write what the last read from the upstream produced, in one send: a small
        response goes out head and body together."""
        if self._out:
            self.front.write(b"".join(self._out))
            self._out.clear()

    def resume_request(self) -> None:
        """The upstream takes body bytes again: read from the client again."""
        self.front.resume_reading()

    def response_done(self) -> None:
        """The response is complete: close its framing."""
        if self._chunked_response:
            self._out.append(b"0\r\n\r\n")
        self.flush()
        self.upstream = None
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(True)

    def upstream_lost(self, answered: bool) -> None:
        """The upstream dropped the connection."""
        self.upstream = None
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(False)

    # -- answers made by the router itself --

    def answer(self, data: bytes, status: int) -> None:
        """Write a whole response the router made (an error)."""
        self.status = status
        self.started = True
        self.front.write(data)

    def close_after(self) -> bool:
        """Whether the client connection must close once this response is written."""
        return self._close_after or not self.keep_alive


_RESPONSE_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)


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
