"""The runner's HTTP/1.1 server for WSGI apps: one thread per connection.

Each connection has a thread that reads a request, runs the app and writes the answer itself,
so a request costs its own socket calls and no hand-over between threads. At most
``max_requests`` requests run app code at once (``DOCKYARD_WSGI_THREADS``); the others wait
for a turn on their own thread. Standard library only, and nothing newer than Python 3.7
(served and stopped by hand on 3.7 to 3.13): it ships in every version image, whatever Python
the base image has.

It replaced waitress, whose dispatcher thread hands every request to a worker thread and back.
On a 2-core machine, with 32 keep-alive clients that send the next request as soon as an answer
arrives (wrk, or the router's pooled connections), a tiny app got 1.2-4.4k req/s out of
waitress (4 threads) and 10.6-14.8k out of this server.

What it enforces, answering 4xx and closing the connection otherwise: a request head of at most
:data:`MAX_HEAD_BYTES`; HTTP/1.0 or 1.1; at most one ``Host``, a valid one, and one in every
HTTP/1.1 request (RFC 9112 3.2); no fragment in the target, and in an absolute-form target
(``http://host:port/path``) a valid authority without userinfo, which the app then sees as
its host; a body framed by one valid ``Content-Length`` or by ``Transfer-Encoding: chunked``
(never both). Header names with ``_`` are dropped: in the WSGI environ they would be
indistinguishable from the ``-`` spelling a proxy vouches for.
"""

from __future__ import annotations

import contextlib
import functools
import io
import queue
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:  # evaluated by type checkers only: older Pythons cannot subscript dict
    WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MAX_HEAD_BYTES = 65536
"""Request line and headers together; past it the answer is 431."""

IDLE_TIMEOUT_S = 75.0
"""A connection with nothing to read or write for this long is closed; a request head that
has not arrived whole this long after the previous answer (or the connection) too."""

DRAIN_LIMIT_BYTES = 1 << 20
"""A request body the app left unread is read away up to this size to keep the connection."""

PRELOAD_LIMIT_BYTES = 1 << 20
"""A ``Content-Length`` body up to this size is read before the app gets a turn, so that a
slow client holds no turn while it uploads."""

LINGER_S = 2.0
"""Closing with input unread, the server reads it away this long first: closed at once, the
kernel would reset the connection and the client could lose the answer sent before."""

MAX_CONNECTIONS = 1000
"""Open connections (each has a thread); more wait in the listening socket's backlog."""

STOP_GRACE_S = 30.0
"""After SIGTERM, how long requests already running may take before the runner exits."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOP_BY_HOP = frozenset(
    (
        *("connection", "keep-alive", "proxy-authenticate", "proxy-authorization"),
        *("te", "trailer", "transfer-encoding", "upgrade"),
    )
)
_NO_BODY_STATUS = frozenset((204, 304))
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")
_OWS = " \t"  # HTTP's whitespace: str.strip() alone would also take latin-1's \xa0 and \x85
_VALUE_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # a header value may hold tabs
_HOST = re.compile(r"(\[[0-9A-Za-z:.%_~-]+\]|[-A-Za-z0-9._~%!$&'()*+,;=]*)(:[0-9]*)?")
"""RFC 9110 7.2: ``uri-host [ ":" port ]`` (an empty value included)."""


class BadRequest(Exception):
    """The request cannot be read; answered with ``status`` and the connection closed."""

    def __init__(self, reason: str, status: str = "400 Bad Request") -> None:
        super().__init__(reason)
        self.status = status


class ClientGone(Exception):
    """The connection broke, ended or went quiet for :data:`IDLE_TIMEOUT_S`."""


class Request:
    """A parsed request head."""

    def __init__(self, method: str, target: bytes, version: str) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers: list[tuple[str, str]] = []
        self.path_and_query, self.authority = origin_form(target)
        """The target's path and query; an absolute-form target's authority (else None)."""

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def tokens(self, name: str) -> set[str]:
        return {
            token.strip(_OWS).lower() for value in self.header(name) for token in value.split(",")
        }


def read_head(reader: BinaryIO) -> Request:
    """Read a request line and its headers; :class:`ClientGone` at a clean end of stream."""
    budget = MAX_HEAD_BYTES
    line = b"\r\n"
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: empty lines before a request are ignored
        line = _read_line(reader, budget)
        if not line:
            raise ClientGone
        budget -= len(line)
        if budget < 0:
            raise BadRequest("request line too long", "414 URI Too Long")
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
            raise BadRequest("only HTTP/1.0 and 1.1", "505 HTTP Version Not Supported")
        raise BadRequest("malformed request line")
    if _CONTROL.search(target):
        raise BadRequest("control character in the request target")
    if b"#" in target:
        raise BadRequest("a fragment in the request target")
    request = Request(method.decode("ascii"), target, version.decode("ascii"))
    if request.authority is not None:
        _check_authority(request.authority)
    elif not target.startswith(b"/") and target != b"*":  # RFC 9112 3.2's forms, but CONNECT's
        raise BadRequest("the request target is not a path, an absolute URL or *")
    while True:
        line = _read_line(reader, budget)
        budget -= len(line)
        if budget < 0:
            raise BadRequest("request head too large", "431 Request Header Fields Too Large")
        if not line.endswith(b"\n"):
            raise BadRequest("request head ended early")
        if line in (b"\r\n", b"\n"):
            _check_host(request)
            return request
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t\r\n")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest("malformed header line")  # obsolete line folding too
        if _VALUE_CONTROL.search(value):
            raise BadRequest("control character in a header value")
        request.headers.append((name.decode("ascii").lower(), value.decode("latin-1")))


def _check_host(request: Request) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request has one Host, and any Host is a valid one."""
    hosts = request.header("host")
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    if not hosts and request.version == "HTTP/1.1":
        raise BadRequest("an HTTP/1.1 request needs a Host header")
    if hosts and not _HOST.fullmatch(hosts[0]):
        raise BadRequest("the Host header is not a host and port")


def _check_authority(authority: bytes) -> None:
    """An absolute-form target's authority stands in for Host (RFC 9112 3.2.2): a host and
    port, with a host (RFC 9110 4.2.1), and no userinfo (4.2.4: it hides the real host)."""
    if b"@" in authority:
        raise BadRequest("userinfo in the request target")
    match = _HOST.fullmatch(authority.decode("latin-1"))
    if match is None or not match.group(1):
        raise BadRequest("the request target's authority is not a host and port")


def _read_line(reader: BinaryIO, budget: int) -> bytes:
    """A line of at most ``budget`` + 1 bytes (one more tells the caller it is too long)."""
    try:
        return reader.readline(budget + 1)
    except OSError as error:
        raise ClientGone from error


class Body:
    """``wsgi.input``: the request body, framed by ``Content-Length`` or chunked.

    ``read(n)`` returns ``n`` bytes unless the body ends first. Sends ``100 Continue`` before
    the first read when the client asked for it.
    """

    def __init__(
        self, reader: BinaryIO, length: int | None, send_continue: Callable[[], None] | None
    ) -> None:
        self._reader = reader
        self._chunked = length is None
        self._left = length or 0  # of the body, or of the current chunk when chunked
        self._started = False
        self.done = length == 0
        self.broken: BadRequest | None = None
        """Set once the body was found badly framed: the connection cannot be reused."""
        self._send_continue = send_continue

    @property
    def drainable(self) -> bool:
        """Whether the end of the body can still be found by reading it away."""
        if self.broken is not None or self._send_continue is not None:
            return self.done  # no go-ahead was sent: the client may or may not send it
        return self.done or self._chunked or self._left <= DRAIN_LIMIT_BYTES

    def forgo_continue(self) -> None:
        """The answer starts: a ``100 Continue`` can no longer be sent."""
        self._send_continue = None

    def preload(self) -> None:
        """Read a ``Content-Length`` body of at most :data:`PRELOAD_LIMIT_BYTES` now."""
        if self._chunked or self.done or self._send_continue or self._left > PRELOAD_LIMIT_BYTES:
            return
        try:
            data = self._reader.read(self._left) or b""  # None: the receive timeout fired
        except OSError as error:
            raise ClientGone from error
        if len(data) < self._left:
            raise ClientGone("the request body ended early")
        self._reader = cast(BinaryIO, io.BytesIO(data))

    def read(self, size: int | None = -1) -> bytes:
        return self._gather(size, line=False)

    def readline(self, size: int | None = -1) -> bytes:
        return self._gather(size, line=True)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        line = self.readline()
        while line:
            yield line
            line = self.readline()

    def _gather(self, size: int | None, line: bool) -> bytes:
        """Up to ``size`` bytes (all if None or negative), ending at a newline if ``line``."""
        parts = []
        left = -1 if size is None or size < 0 else size
        while left != 0:
            part = self._some(left if left > 0 else 65536, line)
            if not part:
                break
            parts.append(part)
            left -= len(part) if left > 0 else 0
            if line and part.endswith(b"\n"):
                break
        return b"".join(parts)

    def _some(self, size: int, line: bool) -> bytes:
        """Up to ``size`` bytes (up to a newline if ``line``) of what is left."""
        if self.broken is not None:
            raise self.broken  # again: an app that swallowed it must not read on
        if self.done:
            return b""
        if self._send_continue is not None:
            send, self._send_continue = self._send_continue, None
            send()
        try:
            if self._left == 0 and not self._next_chunk():
                return b""
            count = min(size, self._left)
            data = self._reader.readline(count) if line else self._reader.read(count)
            if not data:
                raise BadRequest("request body ended early")
        except OSError as error:
            raise ClientGone from error
        except BadRequest as error:
            self.broken = error
            raise
        self._left -= len(data)
        if self._left == 0 and not self._chunked:
            self.done = True
        return data

    def _next_chunk(self) -> bool:
        """Start the next chunk: False after the last one and its trailers were read."""
        if self._started and self._reader.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest("chunk not followed by CRLF")
        self._started = True
        line = self._reader.readline(1026)
        size = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not line.endswith(b"\n") or not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size):
            raise BadRequest("malformed chunk size")
        self._left = int(size, 16)
        if self._left:
            return True
        for _ in range(100):  # trailers: read and ignored
            trailer = self._reader.readline(MAX_HEAD_BYTES + 1)
            if trailer in (b"\r\n", b"\n"):
                self.done = True
                return False
            if not trailer.endswith(b"\n"):
                break
        raise BadRequest("malformed chunked trailer")

    def drain(self, limit: int) -> bool:
        """Read away what the app left unread; True if the body ended within ``limit`` bytes."""
        self.forgo_continue()  # the client waits for an answer, not for a go-ahead
        while not self.done and limit > 0:
            part = self._some(min(limit, 65536), line=False)
            if not part:
                break
            limit -= len(part)
        return self.done


def body_length(request: Request) -> int | None:
    """The body's length, None for chunked; :class:`BadRequest` for ambiguous framing."""
    codings = [
        coding.strip(_OWS).lower()
        for value in request.header("transfer-encoding")
        for coding in value.split(",")
    ]
    lengths = {
        length.strip(_OWS)
        for value in request.header("content-length")
        for length in value.split(",")
    }
    if codings:
        if lengths:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if request.version == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if codings != ["chunked"]:
            raise BadRequest("only Transfer-Encoding: chunked", "501 Not Implemented")
        return None
    if not lengths:
        return 0
    if len(lengths) != 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(lengths))):
        raise BadRequest("invalid Content-Length")
    return int(next(iter(lengths)))


_date_cache = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return str(_date_cache[1])


class Exchange:
    """One request's answer: ``start_response``, ``write`` and the framing of the body."""

    def __init__(
        self,
        sock: socket.socket,
        request: Request,
        body: Body,
        keep_alive: bool,
        closing: threading.Event,
    ) -> None:
        self.sock = sock
        self.request = request
        self.body = body
        self.keep_alive = keep_alive
        self.closing = closing  # set: the server stops, so this answer closes its connection
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.left: int | None = None  # bytes still to send of a body with a known length
        self.no_body = request.method == "HEAD"

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise RuntimeError("start_response called twice without exc_info")
        if not re.fullmatch(r"[1-9][0-9][0-9] [^\r\n]*", status):
            raise ValueError(f"invalid status {status!r}")
        for name, value in headers:
            if name.lower() in _HOP_BY_HOP:
                raise ValueError(f"{name} is a hop-by-hop header: the server sets it")
            if not _TOKEN.fullmatch(name.encode("latin-1")) or "\n" in value or "\r" in value:
                raise ValueError(f"invalid header {name!r}: {value!r}")
        self.status = status
        self.headers = list(headers)
        return self.write

    def send_head(self, length: int | None, first: bytes = b"") -> None:
        """Send status and headers, and ``first`` (the start of the body) in the same call.

        ``length`` is the body's, when the whole body is known.
        """
        if not self.status:
            raise RuntimeError("the app returned before calling start_response")
        code = int(self.status[:3])
        no_body_status = code in _NO_BODY_STATUS or code < 200
        self.no_body = self.no_body or no_body_status
        declared = [v.strip(_OWS) for n, v in self.headers if n.lower() == "content-length"]
        if declared:
            if len(declared) > 1 or not re.fullmatch(r"[0-9]{1,18}", declared[0]):
                raise ValueError(f"the app's Content-Length must be one number: {declared}")
            self.left = int(declared[0])
        elif length is not None and not no_body_status:
            self.headers.append(("Content-Length", str(length)))  # HEAD's too: GET's length
            self.left = length
        elif self.no_body:
            pass
        elif self.request.version == "HTTP/1.1":
            self.headers.append(("Transfer-Encoding", "chunked"))
            self.chunked = True
        else:
            self.keep_alive = False  # the end of the body is the end of the connection
        if self.closing.is_set() or not self.body.drainable:
            self.keep_alive = False  # said now, in the head, rather than by a surprise close
        self.body.forgo_continue()  # a go-ahead after this head would corrupt the answer
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        named = {name.lower() for name, _ in self.headers}
        if "date" not in named:
            lines.append(f"Date: {http_date()}\r\n")
        if "server" not in named:
            lines.append("Server: dockyard\r\n")
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        if not self.keep_alive:
            lines.append("Connection: close\r\n")
        elif self.request.version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")  # an app's non-latin-1 header fails here: a 500
        self.head_sent = True
        self._send(head + self._framed(first))

    def write(self, data: bytes) -> None:
        """WSGI's ``write`` and each item of the app's iterable; headers wait for a byte."""
        if not isinstance(data, bytes):
            raise TypeError(f"the app gave {type(data).__name__}, not bytes, for the body")
        if not data:
            return
        if not self.head_sent:
            self.send_head(None, data)
        else:
            self._send(self._framed(data))

    def finish(self) -> None:
        """End the body: the last chunk, or a note that the connection cannot be reused."""
        if not self.head_sent:
            self.send_head(0)
        if self.no_body:
            return
        if self.chunked:
            self._send(b"0\r\n\r\n")
        elif self.left:
            self.keep_alive = False  # the app sent less than its Content-Length

    def _framed(self, data: bytes) -> bytes:
        if self.no_body or not data:
            return b""
        if self.left is not None:
            if len(data) > self.left:
                data = data[: self.left]  # never more than announced
            self.left -= len(data)
            return data
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise ClientGone from error


def environ_of(
    request: Request, body: Body, server: tuple[str, int], peer: tuple[str, int]
) -> dict[str, Any]:
    path, _, query = request.path_and_query.partition(b"?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "RAW_URI": request.target.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": str(peer[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        if "_" in name:
            continue
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value.split(",")[0].strip(_OWS)  # checked: all equal
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if request.authority is not None:  # RFC 9112 3.2.2: not the Host header
        environ["HTTP_HOST"] = request.authority.decode("latin-1")
    return environ


def origin_form(target: bytes) -> tuple[bytes, bytes | None]:
    """An absolute-form target (``http://host:port/path?query``) as its path and query, and
    its authority (unchecked: :func:`read_head` refuses a bad one); any other target as it
    is, and None."""
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        return target, None
    end = min((at for at in (rest.find(b"/"), rest.find(b"?")) if at != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    return (tail if tail.startswith(b"/") else b"/" + tail), authority


class Turns:
    """At most ``count`` holders at once; the others block until one ends.

    A queue of tokens: ``queue.SimpleQueue`` is written in C and blocks without the GIL. A
    ``threading.Semaphore`` (Python over a condition variable) cost a third of the
    throughput of a tiny app at 32 connections and 4 turns.
    """

    def __init__(self, count: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(count):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *_exc: object) -> None:
        self._tokens.put(None)


class Server:
    """Serves ``app`` on a listening socket until :meth:`stop`."""

    def __init__(
        self,
        app: WsgiApp,
        sock: socket.socket,
        max_requests: int,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.sock = sock
        self.turns = Turns(max_requests)
        self.connections = threading.BoundedSemaphore(max_connections)
        self.idle_timeout_s = idle_timeout_s
        self.closing = threading.Event()
        self._due: dict[socket.socket, float] = {}
        """Connections reading a request head (or a preloaded body), and when it must have
        arrived whole. Changed and acted on under ``_due_lock``, so that a connection is
        never shut after its entry is gone (its descriptor may serve another by then)."""
        self._due_lock = threading.Lock()
        self._active = 0
        self._active_lock = threading.Lock()
        address = sock.getsockname()
        self.address = (str(address[0]), int(address[1]))

    def serve_forever(self) -> None:
        """Accept until :meth:`stop`; past ``max_connections``, new ones wait in the backlog."""
        threading.Thread(target=self.cut_slow_heads, name="heads", daemon=True).start()
        while True:
            self.connections.acquire()
            try:
                conn, peer = self.sock.accept()
            except OSError:
                self.connections.release()
                if self.closing.is_set():
                    return
                time.sleep(0.05)  # out of descriptors, say: let connections end
                continue
            try:
                thread = threading.Thread(target=self.serve_connection, args=(conn, peer))
                thread.daemon = True
                thread.start()
            except RuntimeError as error:  # "can't start new thread": a process limit
                sys.stderr.write(f"dockyard_runner: connection from {peer} closed: {error}\n")
                conn.close()
                self.connections.release()
                time.sleep(0.05)

    def cut_slow_heads(self) -> None:
        """Shut connections whose request head is overdue (a client sending it byte by byte
        would otherwise hold its thread and connection slot for as long as it likes)."""
        while not self.closing.wait(min(1.0, self.idle_timeout_s / 4)):
            now = time.monotonic()
            with self._due_lock:
                for conn in [conn for conn, due in self._due.items() if now > due]:
                    del self._due[conn]
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)  # its blocked read returns

    def _expect_by(self, conn: socket.socket, seconds: float | None) -> None:
        """Give ``conn`` ``seconds`` to deliver what it is sending; None: it delivered."""
        with self._due_lock:
            if seconds is None:
                self._due.pop(conn, None)
            else:
                self._due[conn] = time.monotonic() + seconds

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Stop accepting, then wait for running requests; True if all ended in time."""
        self.closing.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        deadline = time.monotonic() + grace_s
        while self._active and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._active

    def serve_connection(self, conn: socket.socket, peer: Any) -> None:
        ours = False  # whether the server, not the client, ends the connection
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Kernel timeouts: Python's own (settimeout) would poll before every call.
            quiet = _timeval(self.idle_timeout_s)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, quiet)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, quiet)
            with cast(BinaryIO, conn.makefile("rb", buffering=65536)) as reader:
                while not self.closing.is_set() and self.serve_request(conn, reader, peer):
                    pass
            ours = True
        except (ClientGone, OSError):
            pass  # the client left or went quiet
        finally:
            self._expect_by(conn, None)
            if ours:
                linger(conn)
            conn.close()
            self.connections.release()

    def serve_request(self, conn: socket.socket, reader: BinaryIO, peer: Any) -> bool:
        """Answer one request; True if the connection can carry another."""
        self._expect_by(conn, self.idle_timeout_s)
        try:
            request = read_head(reader)
            length = body_length(request)
        except BadRequest as error:
            refuse(conn, error)
            return False
        finally:
            self._expect_by(conn, None)
        with self._active_lock:
            self._active += 1
        try:
            return self.answer(conn, reader, request, length, peer)
        finally:
            with self._active_lock:
                self._active -= 1

    def answer(
        self, conn: socket.socket, reader: BinaryIO, request: Request, length: int | None, peer: Any
    ) -> bool:
        connection = request.tokens("connection")
        if request.version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        go_ahead = None
        if "100-continue" in request.tokens("expect") and request.version == "HTTP/1.1":
            go_ahead = functools.partial(send_interim, conn, b"100 Continue")
        body = Body(reader, length, go_ahead)
        exchange = Exchange(conn, request, body, keep_alive, self.closing)
        self._expect_by(conn, self.idle_timeout_s)  # a body trickled in holds no thread forever
        try:
            body.preload()
        finally:
            self._expect_by(conn, None)
        environ = environ_of(request, body, self.address, (str(peer[0]), int(peer[1])))
        try:
            self.run_app(environ, exchange)
        except BadRequest as error:  # the app read a body that was not well framed
            if not exchange.head_sent:
                refuse(conn, error)
            return False
        if not exchange.keep_alive or body.broken is not None:
            return False  # a body the app swallowed an error about is not read any further
        try:
            return body.drain(DRAIN_LIMIT_BYTES)
        except BadRequest:
            return False

    def run_app(self, environ: dict[str, Any], exchange: Exchange) -> None:
        """Run the app (on a turn) and send its answer; a 500 if it fails before sending."""
        try:
            with self.turns:
                result = self.app(environ, exchange.start_response)
                whole = None
                try:
                    if isinstance(result, (list, tuple)) and not exchange.head_sent:
                        whole = b"".join(result)
                    else:
                        for data in result:
                            exchange.write(data)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            if whole is not None:  # a whole body: sent after the turn, the app is done with it
                exchange.send_head(len(whole), whole)
            exchange.finish()
        except (BadRequest, ClientGone):
            raise
        except Exception:
            # One write, so that another thread's lines never land inside the traceback.
            request_id = environ.get("HTTP_X_REQUEST_ID", "-")
            sys.stderr.write(
                f"dockyard_runner: request {request_id} ({environ['REQUEST_METHOD']} "
                f"{environ['RAW_URI']}) failed:\n{traceback.format_exc()}"
            )
            if exchange.head_sent:  # part of the answer left: all the client can learn is a cut
                raise ClientGone("the app failed after its answer started") from None
            exchange.keep_alive = False
            refuse(exchange.sock, BadRequest("internal error", "500 Internal Server Error"))


def send_interim(conn: socket.socket, status: bytes) -> None:
    """A 1xx answer (``100 Continue``): sent before the body is read, so before any other."""
    try:
        conn.sendall(b"HTTP/1.1 " + status + b"\r\n\r\n")
    except OSError as error:
        raise ClientGone from error


def linger(conn: socket.socket) -> None:
    """End our side, then read what the client still sends for up to :data:`LINGER_S`.

    Closed with unread input, the kernel would answer with a reset, and the client could
    lose the answer it was sent (a 413 or 401 to an upload the app did not read, say).
    """
    deadline = time.monotonic() + LINGER_S
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0.25))
        while time.monotonic() < deadline and conn.recv(65536):
            pass


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for ``SO_RCVTIMEO`` / ``SO_SNDTIMEO``."""
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))


def refuse(conn: socket.socket, error: BadRequest) -> None:
    """Answer ``error`` with a short text body; the caller closes the connection."""
    body = f"{error}\n".encode()
    head = (
        f"HTTP/1.1 {error.status}\r\nDate: {http_date()}\r\nServer: dockyard\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        conn.sendall(head.encode("latin-1") + body)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _stderr_line(text: str) -> None:
    sys.stderr.write(text + "\n")


def serve(
    app: WsgiApp,
    host: str,
    port: int,
    max_requests: int,
    log: Callable[[str], None] = _stderr_line,
) -> int:
    """Serve until SIGTERM or SIGINT, then let running requests finish; exit code 0.

    ``log`` gets a line when the server listens, when it stops and when it is done."""
    server = Server(app, listen(host, port), max_requests)
    signals: list[int] = []
    # Append only: a handler that took a lock could deadlock on a second signal.
    signal.signal(signal.SIGTERM, lambda signum, _frame: signals.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signals.append(signum))
    threading.Thread(target=server.serve_forever, name="accept", daemon=True).start()
    address = server.address
    log(f"dockyard_runner: listening on {address[0]}:{address[1]}, {max_requests} requests at once")
    while not signals:
        time.sleep(0.2)
    log(f"dockyard_runner: {signal.Signals(signals[0]).name}: finishing running requests")
    if not server.stop():
        log(f"dockyard_runner: requests still running after {STOP_GRACE_S:.0f} s")
    log("dockyard_runner: stopped")
    return 0
