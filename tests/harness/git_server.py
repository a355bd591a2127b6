"""A real git server for tests: ``git http-backend`` behind HTTPS on loopback, with a
certificate for a host name of the test's choosing (one that resolves nowhere, so a fetch
that succeeds proves the client connected to the address it was given), and listeners
that stand for the other things a git URL may reach."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = [
    "GitHttpsServer",
    "Listener",
    "make_repository",
    "run_git",
    "serve_git_https",
    "silent_listener",
]

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "PATH": "/usr/bin:/bin",
}


def run_git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its output."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=_GIT_ENV
    )
    return done.stdout.strip()


def make_repository(path: Path, files: dict[str, bytes]) -> str:
    """A repository at ``path`` with one commit of ``files`` on ``main``; the commit sha."""
    path.mkdir(parents=True)
    run_git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        (path / name).write_bytes(content)
    run_git(path, "add", ".")
    run_git(path, "commit", "-q", "-m", "first")
    return run_git(path, "rev-parse", "HEAD")


@dataclass
class GitHttpsServer:
    """A running server: its port, the CA file a client trusts, the Host headers it saw."""

    port: int
    ca_file: Path
    hosts_seen: list[str] = field(default_factory=list)


def _certificate(directory: Path, host: str) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=DNS:{host}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _ThreadingWsgiServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _backend(root: Path, server: GitHttpsServer) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        server.hosts_seen.append(str(environ.get("HTTP_HOST", "")))
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        cgi = {
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH": "/usr/bin:/bin",
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        }
        output = subprocess.run(
            ["git", "http-backend"], input=body, env=cgi, capture_output=True, check=False
        ).stdout
        head, _, payload = output.partition(b"\r\n\r\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    return app


@contextlib.contextmanager
def serve_git_https(root: Path, host: str, work: Path) -> Iterator[GitHttpsServer]:
    """Serve the repositories under ``root`` over HTTPS on 127.0.0.1 as ``host``."""
    cert, key = _certificate(work, host)
    httpd = _ThreadingWsgiServer(("127.0.0.1", 0), _QuietHandler)
    running = GitHttpsServer(port=httpd.server_address[1], ca_file=cert)
    httpd.set_app(_backend(root, running))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@dataclass
class Listener:
    """A TCP port on loopback that accepts and (optionally) answers fixed bytes."""

    port: int
    received: list[bytes] = field(default_factory=list)
    connections: int = 0


@contextlib.contextmanager
def silent_listener(answer: bytes | None = None) -> Iterator[Listener]:
    """Accept connections on 127.0.0.1, record what arrives first; send ``answer`` and
    close, or (None) say nothing and keep the connection open until the test ends."""
    server = socket.create_server(("127.0.0.1", 0))
    listener = Listener(port=server.getsockname()[1])
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            listener.connections += 1
            connection.settimeout(2)
            with contextlib.suppress(OSError):
                listener.received.append(connection.recv(4096))
            if answer is None:
                held.append(connection)
                continue
            with contextlib.suppress(OSError):
                connection.sendall(answer)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()
