"""One replica of a local workload: its process, the record that outlives the scheduler, its log.

A replica runs in its own process group, not tied to the scheduler's life: a scheduler that
restarts finds each replica's :class:`ReplicaRecord` on disk and adopts the replica (same
process, same port) when its workload is still wanted, instead of starting a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dockyard_common import WorkloadState
from dockyard_scheduler.desired import Workload, endpoint_prefix
from dockyard_scheduler.drivers.local.images import UnpackedImage

__all__ = [
    "Replica",
    "ReplicaRecord",
    "Sandbox",
    "kill_group",
    "load_records",
    "process_environment",
    "tail_lines",
    "wait_exit",
]

_TAIL_CHUNK = 64 * 1024


_IMAGE_DEPS = "/dockyard/deps"
"""The image's dependency layer (container targets): a local replica has its version's
environment instead, so this ``PYTHONPATH`` entry is left out."""


@dataclass(frozen=True)
class Sandbox:
    """Where one replica lives on this machine: its version's environment, its own home."""

    environment: Path
    dependencies: Path | None
    """The shared environment of its locked dependencies (read-only to it), if any."""
    home: Path
    shims: Path
    socket: Path | None
    """The Unix socket the router reaches it through; None without network namespaces
    (the replica then listens on ``$PORT`` of the target's address)."""


def process_environment(
    workload: Workload, image: UnpackedImage, sandbox: Sandbox, *, host: str, port: int
) -> dict[str, str]:
    """The environment of a replica: the image's Env mapped onto this machine.

    ``PYTHONPATH`` entries are image paths, so they move under the unpacked tree. ``PATH``
    starts with the version's environment, then ``uv``, then the system's directories; the
    platform's own environment is on no path a replica sees.
    """
    env: dict[str, str] = {}
    for item in image.config.get("Env", []):
        key, _, value = str(item).partition("=")
        env[key] = value
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = os.pathsep.join(
            str(image.root / entry.lstrip("/"))
            for entry in env["PYTHONPATH"].split(":")
            if entry and entry.rstrip("/") != _IMAGE_DEPS
        )
    prefix = endpoint_prefix(workload.version, workload.endpoint.name)
    tmp = sandbox.home / "tmp"
    env.update(
        PATH=os.pathsep.join(
            [str(sandbox.environment / "bin"), str(sandbox.shims), *_system_path()]
        ),
        VIRTUAL_ENV=str(sandbox.environment),
        # `uv run` uses the version's environment as it is: installed at build time, offline.
        UV_PROJECT_ENVIRONMENT=str(sandbox.environment),
        UV_NO_SYNC="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_CACHE_DIR=str(sandbox.home / ".cache" / "uv"),
        HOME=str(sandbox.home),
        TMPDIR=str(tmp),
        HOST=host,
        PORT=str(port),
        VH_DEFAULT_PREFIX=prefix,
        LANG=os.environ.get("LANG", "C.UTF-8"),
    )
    return env


def _system_path() -> list[str]:
    """The scheduler's PATH without the platform's own environment (``uv run`` puts it first)."""
    ours = Path(sys.prefix).resolve()
    kept = []
    for entry in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        if entry and not Path(entry).resolve().is_relative_to(ours):
            kept.append(entry)
    return kept


class ReplicaRecord(BaseModel):
    """What a later scheduler needs to adopt (or reap) a running replica."""

    model_config = ConfigDict(frozen=True)

    key: str
    index: int
    manifest_digest: str
    port: int
    socket: str | None = None
    pid: int
    started: int
    """The process's start time in clock ticks since boot: a reused pid has another."""
    retiring: bool = False
    """Scaled down and out of the route, stopping after its drain: a later scheduler
    stops it rather than adopt it as serving."""

    def alive(self) -> bool:
        """Whether the recorded process still runs (not exited, not a zombie, not a reuse)."""
        return process_start_ticks(self.pid) == self.started


def process_start_ticks(pid: int) -> int | None:
    """The start time of a live process (``/proc/<pid>/stat``), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def load_records(directory: Path) -> list[tuple[Path, ReplicaRecord]]:
    """Every readable record in ``directory`` with its file; unreadable ones are deleted."""
    records = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            records.append((path, ReplicaRecord.model_validate_json(path.read_bytes())))
        except (OSError, ValidationError):
            path.unlink(missing_ok=True)
    return records


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal a replica's whole process group (its server and anything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def wait_exit(pid: int, poll_s: float = 0.5) -> None:
    """Wait until a process that is not our child exits (a pidfd where the kernel has one)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        # No pidfd (an old kernel): polling is all there is.
        while process_start_ticks(pid) is not None:  # noqa: ASYNC110
            await asyncio.sleep(poll_s)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read backwards from its end (logs grow large)."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - _TAIL_CHUNK)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


@dataclass
class Replica:
    """One supervised replica: where it listens, its process, what its supervisor saw."""

    workload: Workload
    index: int
    port: int
    log_path: Path
    record_path: Path
    socket: Path | None = None
    """The Unix socket of a replica in a network namespace of its own (None: ``$PORT``)."""
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    """The process group leader: our child, or a process adopted from an earlier scheduler."""
    started: int | None = None
    """The leader's start time (clock ticks): a pid reused by another process is not ours."""
    state: WorkloadState = WorkloadState.DEPLOYING
    reason: str | None = None
    restarts: int = 0
    up_since: float = 0.0
    retiring: bool = False
    """Scaled down: out of the route, stopped after its drain (its record says so)."""

    @property
    def host(self) -> str:
        """The loopback address of the replica's target."""
        return self.workload.target.address or "127.0.0.1"

    @property
    def upstream(self) -> str:
        """Where the router sends requests for this replica."""
        if self.socket is not None:
            return f"unix:{self.socket}"
        return f"http://{self.host}:{self.port}"

    def last_log_lines(self, count: int = 20) -> str:
        """The replica's last output lines, for reasons people read."""
        return "\n".join(tail_lines(self.log_path, count)).strip()

    def running(self) -> bool:
        """Whether the replica's process runs."""
        # /proc too: an exited child is a zombie until the event loop's watcher reaps it.
        if self.process is not None and self.process.returncode is not None:
            return False
        if self.pid is None:
            return False
        started = process_start_ticks(self.pid)
        return started is not None and (self.started is None or started == self.started)

    def save_record(self) -> None:
        """Write the adoption record of the running process (atomically)."""
        started = None if self.pid is None else process_start_ticks(self.pid)
        if self.pid is None or started is None:
            return
        self.started = started
        record = ReplicaRecord(
            key=self.workload.key,
            index=self.index,
            manifest_digest=self.workload.manifest_digest,
            port=self.port,
            socket=str(self.socket) if self.socket else None,
            pid=self.pid,
            started=started,
            retiring=self.retiring,
        )
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.record_path.with_suffix(".tmp")
        scratch.write_text(record.model_dump_json())
        scratch.replace(self.record_path)

    async def wait_exit(self) -> int | None:
        """Wait for the process to end; its exit code (None for an adopted process)."""
        if self.process is not None:
            return await self.process.wait()
        if self.pid is not None:
            await wait_exit(self.pid)
        return None

    async def kill(self, grace_s: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; forget the record and
        the socket (outside the launcher's root, it cannot remove it)."""
        self.record_path.unlink(missing_ok=True)
        if self.pid is not None and self.running():
            kill_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait_exit(), grace_s)
            except TimeoutError:
                kill_group(self.pid, signal.SIGKILL)
                await self.wait_exit()
        if self.socket is not None:
            self.socket.unlink(missing_ok=True)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the replica opened its port before ``timeout_s`` (False if it exited)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                return False
            try:
                # Not wait_for: on 3.11 it can swallow a cancellation when the connection
                # attempt fails at the same moment, and supervision would outlive remove().
                async with asyncio.timeout(0.5):
                    if self.socket is not None:
                        # The launcher listens on it once the server listens on its port.
                        _, writer = await asyncio.open_unix_connection(self.socket)
                    else:
                        _, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False
