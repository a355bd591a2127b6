"""The local target driver: each replica a supervised process on the target's loopback address.

Each local target stands for a region and binds its endpoints to its own address
(``127.0.1.1``, ``127.0.2.1``, ...). Images run on this machine's Python: the image's file tree
is unpacked once per manifest digest, the command runs with the tree's code root as working
directory. A replica that never opens its port fails with its last log lines; one that exits
is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common import EndpointState, WorkloadState, get_logger
from dockyard_common.processes import free_port, stop_with_parent
from dockyard_scheduler.desired import Workload, endpoint_prefix
from dockyard_scheduler.drivers import Reporter
from dockyard_scheduler.images import UnpackedImage, unpack_image
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["LocalDriver", "process_environment"]

log = get_logger(__name__)

_LOG_TAIL_LINES = 20


def process_environment(
    workload: Workload, image: UnpackedImage, *, host: str, port: int, shims: Path
) -> dict[str, str]:
    """The environment of a replica: the image's Env mapped onto this machine.

    ``PYTHONPATH`` entries are image paths, so they move under the unpacked tree; ``PATH``
    starts with a directory whose ``python`` is this machine's interpreter.
    """
    env: dict[str, str] = {}
    for item in image.config.get("Env", []):
        key, _, value = str(item).partition("=")
        env[key] = value
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = os.pathsep.join(
            str(image.root / entry.lstrip("/")) for entry in env["PYTHONPATH"].split(":") if entry
        )
    prefix = endpoint_prefix(workload.version, workload.endpoint.name)
    env.update(
        PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        HOME=str(image.root),
        HOST=host,
        PORT=str(port),
        VH_DEFAULT_PREFIX=prefix,
        LANG=os.environ.get("LANG", "C.UTF-8"),
    )
    return env


@dataclass
class _Replica:
    workload: Workload
    port: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    started_ns: int = field(default_factory=time.time_ns)
    failed_at: float | None = None
    """When the replica last failed for good (monotonic); a later reconcile retries it."""

    @property
    def upstream(self) -> str:
        return f"http://{self.workload.target.address}:{self.port}"

    def last_log_lines(self) -> str:
        try:
            with self.log_path.open("rb") as handle:
                lines = deque(handle, maxlen=_LOG_TAIL_LINES)
        except FileNotFoundError:
            return ""
        return b"".join(lines).decode("utf-8", errors="replace").strip()


class LocalDriver:
    """Runs workloads as supervised local processes, one replica each."""

    def __init__(self, settings: SchedulerSettings, report: Reporter) -> None:
        self._settings = settings
        self._report = report
        self._replicas: dict[str, _Replica] = {}
        self._shims = settings.runtime_dir / "shims"
        self._groups = settings.runtime_dir / "process-groups"

    def reap_leftovers(self) -> int:
        """Kill replicas a previous scheduler left behind (killed before it could stop them).

        Each replica's process group is recorded while it runs; a group still alive whose
        leader works inside our unpacked images is ours, and is killed with all its
        descendants (the parent-death signal reaches only the direct child). Returns how
        many groups were killed.
        """
        killed = 0
        images = (self._settings.runtime_dir / "images").resolve()
        for record in sorted(self._groups.glob("*.pgid")) if self._groups.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                pgid = int(record.read_text())
                cwd = Path(os.readlink(f"/proc/{pgid}/cwd")).resolve()
                if cwd.is_relative_to(images):
                    os.killpg(pgid, signal.SIGKILL)
                    killed += 1
            record.unlink(missing_ok=True)
        if killed:
            log.warning("replicas.leftover.killed", groups=killed)
        return killed

    async def ensure(self, workload: Workload) -> bool:
        """Start the workload unless it already runs this image; True when something changed."""
        current = self._replicas.get(workload.key)
        if current is not None and current.workload.manifest_digest == workload.manifest_digest:
            if not self._due_for_retry(current):
                return False
            log.info("replica.retrying", key=workload.key)
        if current is not None:
            await self.remove(workload.key)
        address = workload.target.address or "127.0.0.1"
        replica = _Replica(
            workload=workload,
            port=free_port(address),
            log_path=self._settings.runtime_dir / "logs" / f"{workload.key.replace('/', '_')}.log",
        )
        self._replicas[workload.key] = replica
        replica.task = asyncio.create_task(self._supervise(replica), name=f"replica {workload.key}")
        return True

    async def remove(self, key: str) -> bool:
        """Stop a workload's replica and forget it."""
        replica = self._replicas.pop(key, None)
        if replica is None:
            return False
        if replica.task is not None:
            replica.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task
        await self._kill(replica)
        return True

    async def close(self) -> None:
        """Stop every replica (on shutdown)."""
        await asyncio.gather(*(self.remove(key) for key in list(self._replicas)))

    def _due_for_retry(self, replica: _Replica) -> bool:
        """A replica that failed (or lost its supervisor) is tried again after a pause."""
        if replica.task is None or not replica.task.done():
            return False
        failed_at = replica.failed_at if replica.failed_at is not None else 0.0
        return time.monotonic() - failed_at >= self._settings.retry_failed_after_s

    def workload(self, key: str) -> Workload | None:
        """The workload running (or tried) under ``key``."""
        replica = self._replicas.get(key)
        return replica.workload if replica is not None else None

    def workload_keys(self) -> set[str]:
        """The workloads this driver runs (or tried to run)."""
        return set(self._replicas)

    async def _supervise(self, replica: _Replica) -> None:
        delays = self._settings.restart_backoff_s
        await self._state(replica, WorkloadState.DEPLOYING)
        try:
            image = await asyncio.to_thread(
                unpack_image,
                replica.workload.version.image,  # type: ignore[arg-type]  # built versions only
                replica.workload.manifest_digest,
                self._settings.runtime_dir / "images",
            )
        except Exception as exc:
            log.exception("replica.unpack.failed", key=replica.workload.key)
            replica.failed_at = time.monotonic()
            await self._state(replica, WorkloadState.FAILED, f"could not unpack the image: {exc}")
            return
        while True:
            process = await self._start(replica, image)
            ready, reason = await self._wait_ready(replica, process)
            if not ready:
                await self._kill(replica)
                replica.failed_at = time.monotonic()
                await self._state(replica, WorkloadState.FAILED, reason)
                return
            await self._state(replica, WorkloadState.READY)
            code = await process.wait()
            delay = delays[min(replica.restarts, len(delays) - 1)]
            replica.restarts += 1
            log.warning(
                "replica.exited",
                key=replica.workload.key,
                code=code,
                restarts=replica.restarts,
                restart_in_s=delay,
            )
            await self._state(
                replica,
                WorkloadState.DEPLOYING,
                f"exited with code {code}; restart {replica.restarts} in {delay} s "
                f"(crash-looping if this repeats); last lines:\n{replica.last_log_lines()}",
            )
            await asyncio.sleep(delay)
            replica.port = free_port(replica.workload.target.address or "127.0.0.1")

    async def _start(self, replica: _Replica, image: UnpackedImage) -> asyncio.subprocess.Process:
        self._ensure_shims()
        command = [str(part) for part in image.config.get("Cmd", [])]
        workdir = image.root / str(image.config.get("WorkingDir", "/")).lstrip("/")
        env = process_environment(
            replica.workload,
            image,
            host=replica.workload.target.address or "127.0.0.1",
            port=replica.port,
            shims=self._shims,
        )
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        with replica.log_path.open("ab") as log_file:
            replica.process = await asyncio.create_subprocess_exec(
                *command,
                cwd=workdir,
                env=env,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=stop_with_parent,
            )
        replica.started_ns = time.time_ns()
        self._groups.mkdir(parents=True, exist_ok=True)
        self._group_record(replica).write_text(str(replica.process.pid))
        log.info(
            "replica.started",
            key=replica.workload.key,
            pid=replica.process.pid,
            upstream=replica.upstream,
        )
        return replica.process

    async def _wait_ready(
        self, replica: _Replica, process: asyncio.subprocess.Process
    ) -> tuple[bool, str]:
        host = replica.workload.target.address or "127.0.0.1"
        deadline = time.monotonic() + self._settings.readiness_timeout_s
        while time.monotonic() < deadline:
            if process.returncode is not None:
                return False, self._exit_reason(replica, process.returncode)
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, replica.port), timeout=0.5
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        return False, (
            f"never opened port {replica.port} on {host} within "
            f"{self._settings.readiness_timeout_s:g} s; listen on $PORT. Last lines:\n"
            f"{replica.last_log_lines()}"
        )

    def _exit_reason(self, replica: _Replica, code: int) -> str:
        tail = replica.last_log_lines()
        if "Address already in use" in tail or "address already in use" in tail:
            return (
                "the server's port is already in use: on a local target every replica must "
                "listen on $PORT (or use a container target for hard-coded ports). Last lines:\n"
                + tail
            )
        return f"exited with code {code} before opening its port. Last lines:\n{tail}"

    def _group_record(self, replica: _Replica) -> Path:
        return self._groups / f"{replica.workload.key.replace('/', '_')}.pgid"

    async def _kill(self, replica: _Replica) -> None:
        self._group_record(replica).unlink(missing_ok=True)
        process = replica.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._settings.stop_grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def _state_once(
        self, replica: _Replica, state: WorkloadState, reason: str | None = None
    ) -> None:
        w = replica.workload
        upstreams = [replica.upstream] if state is WorkloadState.READY else []
        await self._report(
            EndpointState(
                owner=w.version.owner,
                project=w.version.project,
                deployment=w.version.deployment,
                version=w.version.name,
                endpoint=w.endpoint.name,
                target=w.target.name,
                region=w.target.region,
                state=state,
                upstreams=upstreams,
                reason=reason,
            )
        )

    async def _state(
        self, replica: _Replica, state: WorkloadState, reason: str | None = None
    ) -> None:
        """Report a state change, retrying until it is published: a NATS outage must not end
        the replica's supervision."""
        delay = 0.5
        while True:
            try:
                await self._state_once(replica, state, reason)
                return
            except Exception as exc:
                log.warning("replica.report.retry", key=replica.workload.key, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _ensure_shims(self) -> None:
        # ``python`` in an image command means this machine's interpreter (same minor version
        # as the image's base), not the platform's virtual environment.
        self._shims.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        for name in ("python", "python3"):
            link = self._shims / name
            if not link.exists():
                link.symlink_to(base)
