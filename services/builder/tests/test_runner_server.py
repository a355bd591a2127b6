"""The runner's HTTP server (runner_files/dockyard_server.py) on real sockets.

Each test starts the server on a free port in this process and talks HTTP/1.1 to it with raw
sockets, so that framing, keep-alive and refusals are seen byte for byte.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from dockyard_builder.runner import RUNNER_FILES

# An exception escaping a connection's thread is a server bug, whatever the test checks.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dockyard_server", RUNNER_FILES / "dockyard_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dockyard_server = server_module()


class Closing:
    """An app's iterable whose ``close()`` the server must call."""

    closed: ClassVar[list[str]] = []

    def __init__(self, name: str, parts: list[bytes]) -> None:
        self.name = name
        self.parts = parts

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def close(self) -> None:
        Closing.closed.append(self.name)


RELEASE = threading.Event()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain")]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        seen = {
            key: value
            for key, value in environ.items()
            if key.isupper() and isinstance(value, str) and key != "REMOTE_PORT"
        }
        answer = json.dumps({"body": body.decode(), "environ": seen}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", text)
        return [json.dumps([line.decode() for line in lines]).encode()]
    if path == "/stream":
        start_response("200 OK", text)
        return (part for part in (b"one ", b"", b"two"))
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written ")
        return [b"returned"]
    if path == "/fail":
        raise RuntimeError("the model is broken")
    if path == "/fail-late":

        def parts() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("broke while streaming")

        start_response("200 OK", text)
        return parts()
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"12345"]
    if path == "/closing":
        start_response("200 OK", text)
        return Closing(environ["QUERY_STRING"], [b"closing"])
    if path == "/wait":
        RELEASE.wait(10)
        start_response("200 OK", text)
        return [b"released"]
    if path == "/no-content":
        start_response("204 No Content", [])
        return []
    if path == "/swallow":  # a framework that turns every error into its own answer
        try:
            environ["wsgi.input"].read()
        except Exception:
            start_response("500 Internal Server Error", [("Content-Length", "7")])
            return [b"my own!"]
        start_response("200 OK", text)
        return [b"read"]
    if path == "/unread":
        start_response("401 Unauthorized", [("Content-Length", "6")])
        return [b"denied"]
    if path == "/euro":
        start_response("200 OK", [("X-Price", "5 €")])
        return [b"five"]
    if path == "/text":
        start_response("200 OK", text)
        return ["not bytes"]
    if path == "/two-lengths":
        start_response("200 OK", [("Content-Length", "2"), ("Content-Length", "10")])
        return [b"ok"]
    if path == "/length-twice":  # equal, but a client (aiohttp) refuses the answer
        start_response("200 OK", [("Content-Length", "2"), ("Content-Length", "2")])
        return [b"ok"]
    start_response("200 OK", text)
    return [b"hello"]


@contextlib.contextmanager
def serving(wsgi_app: Any = app, max_requests: int = 4, **options: Any) -> Iterator[Any]:
    """A server on a free port, accepting on a thread of its own, stopped on exit."""
    running = dockyard_server.Server(
        wsgi_app, dockyard_server.listen("127.0.0.1", 0), max_requests, **options
    )
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop(grace_s=5)
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Any]:
    RELEASE.clear()
    with serving() as running:
        yield running
        RELEASE.set()  # before the stop, which waits for running requests


def connect(server: Any) -> socket.socket:
    conn = socket.create_connection(server.address, timeout=5)
    return conn


class Answer:
    """A response read off a socket: status line, headers (lower-case names), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head


def read_to_end(conn: socket.socket, received: bytes = b"") -> bytes:
    """Everything ``conn`` still delivers until the server closes it."""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def read_answer(conn: socket.socket, buffer: bytearray, head_only: bool = False) -> Answer:
    """One response from ``conn``; ``buffer`` carries bytes read past it to the next call."""

    def fill() -> bool:
        data = conn.recv(65536)
        buffer.extend(data)
        return bool(data)

    while b"\r\n\r\n" not in buffer:
        assert fill(), f"connection closed before a full head: {bytes(buffer)!r}"
    end = buffer.index(b"\r\n\r\n") + 4
    raw_head = bytes(buffer[:end])
    del buffer[:end]
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = bytearray()
    if head_only or status in (204, 304) or 100 <= status < 200:
        pass
    elif "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffer) < length:
            assert fill(), "connection closed inside a Content-Length body"
        body += buffer[:length]
        del buffer[:length]
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            while b"\r\n" not in buffer:
                assert fill(), "connection closed inside a chunked body"
            line_end = buffer.index(b"\r\n")
            size = int(bytes(buffer[:line_end]), 16)
            while len(buffer) < line_end + 2 + size + 2:
                assert fill(), "connection closed inside a chunk"
            body += buffer[line_end + 2 : line_end + 2 + size]
            del buffer[: line_end + 2 + size + 2]
            if size == 0:
                break
    else:
        while fill():
            pass
        body += buffer
        del buffer[:]
    return Answer(status, headers, bytes(body), raw_head)


def exchange(server: Any, request: bytes, head_only: bool = False) -> tuple[Answer, bool]:
    """Send ``request`` on a fresh connection: the answer, and whether the server closed."""
    with connect(server) as conn:
        conn.sendall(request)
        answer = read_answer(conn, bytearray(), head_only)
        conn.settimeout(0.3)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
    return answer, closed


def test_keep_alive_serves_requests_in_turn_on_one_connection(server: Any) -> None:
    with connect(server) as conn:
        buffer = bytearray()
        for _ in range(3):
            conn.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(conn, buffer)
            assert (answer.status, answer.body) == (200, b"hello")
            assert answer.headers["content-length"] == "5"
            assert answer.headers["server"] == "dockyard"
            assert "date" in answer.headers
        # Pipelined: two requests in one write, two answers in order.
        conn.sendall(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert read_answer(conn, buffer).body == b"hello"
        assert read_answer(conn, buffer).body == b"one two"


def test_the_environ_follows_pep_3333(server: Any) -> None:
    request = (
        b"POST /echo/caf%C3%A9%2Fx?q=1&r=%20 HTTP/1.1\r\nHost: example:81\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n"
        b"X-Trace: a\r\nX-Trace: b\r\nX_Trace: smuggled\r\n\r\nhello"
    )
    answer, closed = exchange(server, request.replace(b"/echo/caf%C3%A9%2Fx", b"/echo"))
    seen = json.loads(answer.body)
    assert seen["body"] == "hello"
    environ = seen["environ"]
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["QUERY_STRING"] == "q=1&r=%20"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "5"
    assert environ["HTTP_HOST"] == "example:81"
    assert environ["HTTP_X_TRACE"] == "a,b"  # repeated headers joined, the `_` spelling dropped
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["SCRIPT_NAME"] == ""
    assert not closed

    # PATH_INFO is percent-decoded into latin-1 characters, as PEP 3333 says.
    decoded = dockyard_server.environ_of(
        dockyard_server.Request("GET", b"/caf%C3%A9%2Fx?y", "HTTP/1.1"),
        None,
        ("127.0.0.1", 80),
        ("127.0.0.1", 1),
    )
    assert decoded["PATH_INFO"] == "/café/x".encode().decode("latin-1")
    assert decoded["RAW_URI"] == "/caf%C3%A9%2Fx?y"


def test_a_chunked_body_is_read_whole_and_by_lines(server: Any) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;note=ignored\r\nhell\r\n1\r\no\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    answer, closed = exchange(server, request)
    assert json.loads(answer.body)["body"] == "hello"
    assert not closed

    lines = b"POST /lines HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    lines += b"3\r\na\nb\r\n4\r\n\nccc\r\n0\r\n\r\n"
    answer, _ = exchange(server, lines)
    assert json.loads(answer.body) == ["a\n", "b\n", "ccc"]  # "b\n" spans two chunks


def test_a_body_the_app_did_not_read_is_read_away_to_keep_the_connection(server: Any) -> None:
    with connect(server) as conn:
        buffer = bytearray()
        conn.sendall(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nignore")
        assert read_answer(conn, buffer).body == b"hello"
        conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(conn, buffer).body == b"one two"


def test_expect_100_continue_gets_the_go_ahead_when_the_app_reads(server: Any) -> None:
    with connect(server) as conn:
        buffer = bytearray()
        conn.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        go_ahead = read_answer(conn, buffer)
        assert go_ahead.status == 100
        conn.sendall(b"hello")
        assert json.loads(read_answer(conn, buffer).body)["body"] == "hello"


def test_answers_are_framed_by_what_the_app_returns(server: Any) -> None:
    streamed, closed = exchange(server, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.body == b"one two"
    assert not closed

    written, _ = exchange(server, b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n")
    assert written.body == b"written returned"

    # HTTP/1.0 without keep-alive: the body ends with the connection.
    old, closed = exchange(server, b"GET /stream HTTP/1.0\r\n\r\n")
    assert old.body == b"one two" and "transfer-encoding" not in old.headers
    assert old.headers["connection"] == "close" and closed

    with connect(server) as conn:
        conn.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        head = read_answer(conn, buffer, head_only=True)
        assert head.headers["content-length"] == "5"  # GET's length ...
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # ... and no body: the connection stays open and quiet
        assert not buffer

    with connect(server) as conn:
        conn.sendall(b"GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        empty = read_answer(conn, buffer)
        assert empty.status == 204
        assert "content-length" not in empty.headers
        assert "transfer-encoding" not in empty.headers
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # no body, not even a last chunk, and the connection stays
        assert not buffer

    # Less than the app's Content-Length: sent as is, then the connection is closed.
    with connect(server) as conn:
        conn.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_to_end(conn)
    assert received.endswith(b"\r\n\r\n12345")


def test_the_app_iterable_is_closed_after_the_answer(server: Any) -> None:
    Closing.closed.clear()
    answer, _ = exchange(server, b"GET /closing?first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.body == b"closing"
    assert Closing.closed == ["first"]


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (
            b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "invalid Content-Length",
        ),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content"),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n", 400, "invalid Content"),
        (
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "only Transfer-Encoding: chunked",
        ),
        # Only space and tab are HTTP whitespace; latin-1's \xa0 and \x85 are not.
        (
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\xa0\r\n\r\nhello",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x85\r\n\r\n",
            501,
            "only Transfer-Encoding: chunked",
        ),
        (
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \xa0chunked\r\n\r\n",
            501,
            "only Transfer-Encoding: chunked",
        ),
        (
            b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
        (b"GET /x HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "malformed header line"),
        (b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n", 400, "malformed header line"),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400, "control character"),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400, "control character"),
        (b"GET /x\x01y HTTP/1.1\r\nHost: x\r\n\r\n", 400, "control character"),
        (b"GET /x\ry HTTP/1.1\r\nHost: x\r\n\r\n", 400, "control character"),
        # RFC 9112 3.2: one Host, a valid one; an HTTP/1.1 request without one is refused.
        (b"GET /x HTTP/1.1\r\n\r\n", 400, "needs a Host header"),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "more than one Host"),
        (b"GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
        (b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "not a host and port"),
        (b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "not a host and port"),
        (b"GET /x HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400, "not a host and port"),
        (b"GET /x HTTP/1.0\r\nHost: a b\r\n\r\n", 400, "not a host and port"),
        # An absolute-form target: its authority is the host (RFC 9112 3.2.2, RFC 9110 4.2).
        (b"GET http://u:p@h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "userinfo"),
        (b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "authority is not a host"),
        (b"GET http://:80/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "authority is not a host"),
        (b'GET http://a"b/x HTTP/1.1\r\nHost: h\r\n\r\n', 400, "authority is not a host"),
        (b"GET /x#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400, "fragment"),
        (b"GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "not a path, an absolute URL"),
        (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505, "only HTTP/1.0 and 1.1"),
        (b"GET /x FTP/1.0\r\n\r\n", 400, "malformed request line"),
        (b"GET\r\n\r\n", 400, "malformed request line"),
        (
            b"GET /x HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
            431,
            "request head too large",
        ),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "request line too long"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_a_closed_connection(
    server: Any, request_bytes: bytes, status: int, reason: str
) -> None:
    answer, closed = exchange(server, request_bytes)
    assert answer.status == status
    assert answer.headers["connection"] == "close"
    assert reason in answer.body.decode(), answer.body
    assert closed
    assert exchange(server, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")[0].body == b"hello"


@pytest.mark.parametrize(
    ("target", "path", "query", "host"),
    [
        (b"/p/q?x=1", "/p/q", "x=1", "other"),
        # RFC 9112 3.2.2: an absolute-form target's authority stands in for the Host header.
        (b"http://h:81/p/q?x=1", "/p/q", "x=1", "h:81"),
        (b"http://h:81?x=1", "/", "x=1", "h:81"),
        (b"HTTP://h", "/", "", "h"),
    ],
)
def test_the_path_query_and_host_of_each_request_target_form(
    target: bytes, path: str, query: str, host: str
) -> None:
    request = dockyard_server.Request("GET", target, "HTTP/1.1")
    request.headers.append(("host", "other"))
    environ = dockyard_server.environ_of(request, None, ("127.0.0.1", 80), ("127.0.0.1", 1))
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == (path, query)
    assert environ["HTTP_HOST"] == host
    assert environ["RAW_URI"] == target.decode()


@pytest.mark.parametrize(
    ("head", "host"),
    [
        (b"POST /echo HTTP/1.1\r\nHost: [::1]:8080\r\n", "[::1]:8080"),
        (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n", "127.0.0.1:8000"),
        (
            b"POST /echo HTTP/1.1\r\nHost: svc.ns.svc.cluster.local.\r\n",
            "svc.ns.svc.cluster.local.",
        ),
        (b"POST /echo HTTP/1.1\r\nHost: example.com:\r\n", "example.com:"),
        (b"POST /echo HTTP/1.1\r\nHost:\r\n", ""),  # RFC 9112 3.2: no authority to name
        (b"POST http://[::1]:8080/echo HTTP/1.1\r\nHost: other\r\n", "[::1]:8080"),
    ],
)
def test_valid_hosts_are_served(server: Any, head: bytes, host: str) -> None:
    answer, _ = exchange(server, head + b"Content-Length: 0\r\n\r\n")
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["environ"]["HTTP_HOST"] == host


def test_an_http_1_0_request_may_leave_the_host_out(server: Any) -> None:
    answer, _ = exchange(server, b"POST /echo?q HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    assert answer.status == 200
    seen = json.loads(answer.body)
    assert seen["body"] == "hi"
    assert "HTTP_HOST" not in seen["environ"]


def test_a_malformed_chunked_body_is_refused(server: Any) -> None:
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"
    answer, closed = exchange(server, request)
    assert answer.status == 400 and b"chunk" in answer.body
    assert closed


def test_an_app_that_fails_gets_a_500_and_the_server_serves_on(
    server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    answer, closed = exchange(server, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 500 and closed
    assert "the model is broken" in capsys.readouterr().err  # the traceback, for the logs

    # Failing after the answer started: the chunked body is cut (no last chunk).
    with connect(server) as conn:
        conn.sendall(b"GET /fail-late HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_to_end(conn)
    assert b"7\r\npartial\r\n" in received and not received.endswith(b"0\r\n\r\n")
    assert exchange(server, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")[0].body == b"hello"


def test_requests_on_other_connections_run_while_one_waits(server: Any) -> None:
    with connect(server) as waiting:
        waiting.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        started = time.monotonic()
        answer, _ = exchange(server, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.body == b"hello" and time.monotonic() - started < 2
        RELEASE.set()
        assert read_answer(waiting, bytearray()).body == b"released"


def test_at_most_max_requests_run_app_code_at_once() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        start_response("200 OK", [])
        return [b"done"]

    with serving(counting, max_requests=2) as limited:
        answers = []

        def ask() -> None:
            answers.append(exchange(limited, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0].body)

        askers = [threading.Thread(target=ask) for _ in range(6)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(10)
        assert answers == [b"done"] * 6
        assert most == 2


def test_sigterm_lets_a_running_request_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(
        "import time\n"
        "def app(environ, start_response):\n"
        "    time.sleep(1.0)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'finished']\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "PYTHONPATH": str(RUNNER_FILES),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "dockyard_runner", "slow:app"],
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the runner did not listen"
                time.sleep(0.05)
        with conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            runner.send_signal(signal.SIGTERM)
            answer = read_answer(conn, bytearray())
        assert (answer.status, answer.body) == (200, b"finished")
        assert answer.headers["connection"] == "close"  # no further request on it
        assert runner.wait(10) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_a_body_error_the_app_swallowed_still_ends_the_connection(server: Any) -> None:
    """A bad chunk is a framing error: whatever follows on the connection cannot be trusted
    to be a request, even when the app catches the error and answers."""
    with connect(server) as conn:
        conn.sendall(
            b"POST /swallow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buffer = bytearray()
        answer = read_answer(conn, buffer)
        assert (answer.status, answer.body) == (500, b"my own!")
        assert answer.headers["connection"] == "close"
        received = read_to_end(conn, bytes(buffer))
    assert received == b"", "nothing answered the smuggled request"


@pytest.mark.parametrize("path", ["/euro", "/text", "/two-lengths", "/length-twice"])
def test_an_answer_the_server_cannot_send_is_a_500(
    server: Any, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answer, closed = exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 500 and closed
    assert "Traceback" in capsys.readouterr().err


def test_a_turn_is_given_back_when_the_app_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(max_requests=1) as single:
        for _ in range(3):
            assert exchange(single, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")[0].status == 500
        assert exchange(single, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")[0].body == b"hello"
    assert capsys.readouterr().err.count("RuntimeError: the model is broken") == 3


def test_a_slow_upload_holds_no_turn() -> None:
    """Bodies up to PRELOAD_LIMIT_BYTES are read before the app gets its turn."""
    with serving(max_requests=1) as single, connect(single) as uploading:
        uploading.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf-")
        time.sleep(0.2)
        started = time.monotonic()
        answer, _ = exchange(single, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.body == b"hello" and time.monotonic() - started < 1
        uploading.sendall(b"done!")
        assert json.loads(read_answer(uploading, bytearray()).body)["body"] == "half-done!"


def trickle(server: Any, data: bytes, every_s: float) -> float:
    """Send ``data`` a byte at a time until the server ends the connection: how long it took
    (AssertionError if all of it went through)."""
    with connect(server) as slow:
        started = time.monotonic()
        for byte in data:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([slow], [], [], every_s)[0]:
                break  # readable: the server ended the connection
        took = time.monotonic() - started
        assert select.select([slow], [], [], 0)[0], "still open after all of it was sent"
    return took


@pytest.fixture
def quick(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """A server whose idle timeout is 0.6 s; no traceback may reach its log."""
    with serving(max_requests=2, idle_timeout_s=0.6) as server:
        yield server
    assert "Traceback" not in capsys.readouterr().err


def test_a_request_head_sent_byte_by_byte_is_cut_off(quick: Any) -> None:
    # A byte every 0.1 s is never idle for 0.6 s; the head as a whole is overdue.
    took = trickle(quick, b"GET /hello HTTP/1.1\r\nX-Slow: " + b"a" * 100, every_s=0.1)
    assert 0.6 <= took < 3


def test_a_small_body_sent_byte_by_byte_is_cut_off(quick: Any) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with connect(quick) as conn:
        conn.sendall(head)
        started = time.monotonic()
        for _ in range(100):
            try:
                conn.sendall(b"b")
            except OSError:
                break
            if select.select([conn], [], [], 0.1)[0]:
                break
        assert select.select([conn], [], [], 0)[0], "still open after the whole body"
        assert 0.6 <= time.monotonic() - started < 3


def test_a_body_that_never_comes_ends_the_connection(quick: Any) -> None:
    with connect(quick) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        started = time.monotonic()
        assert select.select([conn], [], [], 3)[0], "still open after 3 s"
        assert conn.recv(1) == b""
        assert 0.5 <= time.monotonic() - started < 3


def test_a_refused_upload_still_gets_its_answer(server: Any) -> None:
    """An app answering without reading an 8 MB body: the client must see the 401, not a
    reset from closing with its upload unread."""
    with connect(server) as conn:
        conn.sendall(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n")
        sent = threading.Event()

        def upload() -> None:
            with contextlib.suppress(OSError):
                for _ in range(128):
                    conn.sendall(b"x" * 65536)
            sent.set()

        threading.Thread(target=upload, daemon=True).start()
        answer = read_answer(conn, bytearray())
        assert (answer.status, answer.body) == (401, b"denied")
        assert answer.headers["connection"] == "close"  # announced: too much to read away
        sent.wait(10)


def test_a_connection_that_gets_no_thread_is_closed_and_accepting_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = [RuntimeError("can't start new thread")]
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name != "heads" and failures:
            raise failures.pop()
        real_start(thread)

    with serving(max_requests=2) as crowded:
        monkeypatch.setattr(threading.Thread, "start", start)
        with connect(crowded) as refused:
            assert refused.recv(1) == b""  # closed: no thread to serve it
        assert exchange(crowded, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")[0].body == b"hello"
        assert "can't start new thread" in capsys.readouterr().err
