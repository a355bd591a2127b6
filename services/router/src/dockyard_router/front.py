"""The client side of the data plane: HTTP/1.1 connections parsed with httptools.

Each request becomes an :class:`Exchange` handed to the proxy. Its body is streamed: chunks
are held only until an upstream connection is attached, then written through as they come;
the response is written to the client as the upstream sends it. Requests pipelined on one
connection are answered in order. Reading pauses while a peer cannot keep up.

What the router will not handle it answers itself, in order with the answers before it, and
then closes the connection: a malformed request or body (400), a request head too large
(431) or too slow (408), a protocol upgrade or CONNECT (501), an HTTP version other than 1.x
(505). A connection past the process's cap is answered 503 without being parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

from dockyard_router.exchange import Exchange
from dockyard_router.problems import problem_response

__all__ = ["FrontConnection", "front_factory", "sweep_connections"]

_HEAD_LIMIT = 64 * 1024
"""Bytes of request line and headers a client may send."""
_LINGER_S = 1.0
"""How long a connection refused for the cap may take to close its side."""

Handler = Callable[[Exchange], Coroutine[Any, Any, None]]


class _Refused(Exception):
    """Raised in a parser callback to stop parsing: the request is answered with this."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.answer = (status, slug, detail)


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
        self.head_since = self.last_active
        """When the request head being read began (0.0: none is): the connection's opening
        for its first request, the first byte of each later one."""
        self._parsing: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._current: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._refused = False
        """A request was refused: nothing more is read from this connection."""
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
        now = self.last_active = time.monotonic()
        if self._refused:
            return  # the connection closes once the refusal is written
        if not self.head_since and self._parsing is None:
            self.head_since = now  # bytes between requests: a new head (or stray CRLFs)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT, or Upgrade (websocket, h2c): the request before the switch has been
            # queued; it is answered instead of handled.
            exchange = self._queue[-1] if self._queue else None
            if exchange is not None and exchange.method == b"CONNECT":
                self._refuse(501, "not-implemented", _NO_CONNECT, exchange)
            else:
                self._refuse(501, "not-implemented", _NO_UPGRADE, exchange)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(*exc.__context__.answer)
            elif self._head_bytes > _HEAD_LIMIT:
                self._refuse(
                    431,
                    "headers-too-large",
                    f"the request line and headers exceed {_HEAD_LIMIT} bytes",
                )
            elif self._parsing is not None:
                self._refuse(400, "bad-request", f"malformed request body: {exc}")
            else:
                self._refuse(400, "bad-request", f"malformed HTTP request: {exc}")

    def _refuse(
        self, status: int, slug: str, detail: str, exchange: Exchange | None = None
    ) -> None:
        """Answer the request being read (``exchange``, else the one whose body was being
        read, else a head that never became a request) with a problem, after the answers
        due before it, then close; nothing more is read."""
        self._refused = True
        self.head_since = 0.0
        answer = problem_response(status, slug, detail, keep_alive=False)
        if exchange is None:
            exchange, self._parsing = self._parsing, None
        if exchange is not None and self._queue and exchange is self._queue[0]:
            if exchange.refusal is None and self._current is not None:
                # First in line, its task made (maybe forwarding a body now cut short): what
                # went upstream is dropped, and the client gets the error unless an answer
                # has begun; closing cancels the task.
                if exchange.upstream is not None:
                    exchange.upstream.abort()
                if not exchange.started:
                    exchange.answer(answer, status)
                self.close()
                return
        elif exchange is None:
            if not self._queue:
                self.write(answer)
                self.close()
                return
            exchange = Exchange(self, b"", b"", [], False, True)
            self._queue.append(exchange)
        exchange.refusal = (answer, status)
        exchange.keep_alive = False

    def head_timed_out(self, head_s: float) -> None:
        """The request head took longer than ``head_s``: answer 408 and close."""
        if self.transport is None or self.closing:
            return
        self._refuse(
            408,
            "request-timeout",
            f"the request line and headers did not arrive within {head_s:g} s",
        )

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
        if not self.head_since:  # a request following another in the same read
            self.head_since = self.last_active

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
        self.head_since = 0.0
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Refused(
                505,
                "http-version-not-supported",
                f"the router speaks HTTP/1.1 and HTTP/1.0, not HTTP/{version}",
            )
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._headers,
            parser.should_keep_alive(),
            version == "1.1",
        )
        expects = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                exchange.has_body = value.strip() not in (b"0", b"")
            elif lower == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    # Passed on re-chunked, any other coding would reach the upstream undeclared.
                    raise _Refused(501, "not-implemented", _ONLY_CHUNKED)
                exchange.has_body = exchange.chunked_request = True
            elif lower == b"expect" and value.lower() == b"100-continue":
                expects = True
        if expects and not self._queue:  # not in the middle of an earlier answer
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
            if exchange.refusal is None:
                await self._handle(exchange)
            else:
                exchange.answer(*exchange.refusal)
        finally:
            self._queue.popleft()
            self._current = None
            # An answer before the whole request body came leaves the connection unusable.
            unread = not exchange.body_done and self._parsing is exchange
            if unread or exchange.close_after() or (self.closing and not self._queue):
                self.close()
            elif self.transport is not None:
                self._start_next()


_NO_CONNECT = "the router is not a forward proxy: CONNECT is not supported"
_NO_UPGRADE = (
    "protocol upgrades (Upgrade: websocket, h2c) are not supported: the router passes on "
    "HTTP/1.1 requests only"
)
_ONLY_CHUNKED = "the only transfer coding the router accepts is chunked"


class _Busy(asyncio.Protocol):
    """A connection past the process's cap: answered at once, never parsed. What the client
    sends is read and dropped until it closes (at most ``_LINGER_S``): closed with its
    request unread, the connection would be reset, and the answer lost with it."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.Transport, transport)
        writer.write(self._answer)
        writer.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_LINGER_S, writer.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read

    def eof_received(self) -> bool:
        return False  # the client is done too: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


def front_factory(
    handle: Handler,
    connections: set[FrontConnection],
    limit: int,
    on_refused: Callable[[], object],
) -> Callable[[], asyncio.Protocol]:
    """The protocol factory of the router's port: a :class:`FrontConnection` per client
    connection while fewer than ``limit`` are open, else one answered 503 and closed."""
    busy = problem_response(
        503,
        "too-many-connections",
        f"this router process already holds {limit} client connections; try again",
        keep_alive=False,
        headers=b"Retry-After: 1\r\n",
    )

    def protocol() -> asyncio.Protocol:
        if len(connections) >= limit:
            on_refused()
            return _Busy(busy)
        return FrontConnection(handle, connections)

    return protocol


async def sweep_connections(
    connections: set[FrontConnection], idle_s: float, head_s: float, every_s: float
) -> None:
    """Every ``every_s``, until cancelled: answer 408 to connections whose request head took
    longer than ``head_s`` (slow clients), and close those that sent nothing for ``idle_s``
    while no request of theirs was being answered (idle keep-alives)."""
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        head_deadline, quiet_since = now - head_s, now - idle_s
        for connection in list(connections):
            if 0.0 < connection.head_since < head_deadline:
                connection.head_timed_out(head_s)
            elif not connection.busy and connection.last_active < quiet_since:
                connection.close()
