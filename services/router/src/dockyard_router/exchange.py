"""One request and its response as they pass through the router.

An :class:`Exchange` holds the request body until an upstream connection is attached, then
writes it through as it comes (keeping a small one for a retry); the response goes to the
client as the upstream sends it, re-framed when the client needs another framing.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from dockyard_router.upstreams import UpstreamConnection

__all__ = ["ClientConnection", "Exchange"]


class ClientConnection(Protocol):
    """The client connection an exchange came on (a :class:`.front.FrontConnection`)."""

    peer: bytes
    """The client's address."""
    closing: bool
    """It closes after the answer under way."""

    def pause_reading(self) -> None:
        """Read no more from the client for now (a peer is slower)."""

    def resume_reading(self) -> None:
        """Read from the client again."""

    def write(self, data: bytes) -> None:
        """Send bytes to the client."""

    def close(self) -> None:
        """Close once everything written has gone out."""


_REPLAY_LIMIT = 64 * 1024
"""Request bodies up to this size are kept until answered, so a retry can send them again."""
_BUFFER_LIMIT = 1024 * 1024
"""Body bytes held before an upstream is attached; past it, reading from the client pauses."""
_NO_BODY = frozenset({204, 304})


class Exchange:
    """One request from a client and the response going back to it."""

    refusal: tuple[bytes, int] | None = None
    """Set when the router answers this request itself without handling it (a protocol
    upgrade, a malformed body, a request head that never completed): the answer and its
    status. A class default: the request path sets nothing for it."""

    def __init__(
        self,
        front: ClientConnection,
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
