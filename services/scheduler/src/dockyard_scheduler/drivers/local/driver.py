"""The local target driver: each replica a supervised process on the target's loopback address.

Each local target stands for a region and binds its endpoints to its own address
(``127.0.1.1``, ``127.0.2.1``, ...). Images run on this machine's Python: the image's file tree
is unpacked once per manifest digest, the command runs with the tree's code root as working
directory. An endpoint runs ``replicas.min`` replicas per target, each on its own port (no
autoscaler runs locally). A replica that never opens its port fails with its last log lines;
one that exits is restarted with backoff, and reported crash-looping when that repeats.

Replicas outlive the scheduler process: a restarted scheduler adopts those whose workload is
still wanted (same manifest digest) and reaps the rest after its first full pass. SIGTERM
stops them, unless ``keep_replicas_on_exit`` is set (a scheduler upgrade without downtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common import DockyardError, EndpointState, PermanentError, WorkloadState, get_logger
from dockyard_common.logs import ReplicaLogs
from dockyard_common.runtime.processes import free_port
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers import Reporter, report_until_published
from dockyard_scheduler.drivers.local.images import UnpackedImage, unpack_image
from dockyard_scheduler.drivers.local.replicas import (
    Replica,
    ReplicaRecord,
    kill_group,
    load_records,
    process_environment,
    tail_lines,
)
from dockyard_scheduler.drivers.local.rollout import (
    CRASH_LOOP_RESTARTS,
    EndpointSummary,
    ReplicaStatus,
    summarise,
)
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["LocalDriver"]

log = get_logger(__name__)

_STAYED_UP_S = 60.0
"""A replica that served this long before exiting starts its restart count afresh."""


@dataclass
class _Running:
    """A workload's replicas and what was last reported about them."""

    workload: Workload
    replicas: list[Replica]
    task: asyncio.Task[None] | None = None
    was_ready: bool = False
    reported: EndpointSummary | None = None
    failed_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LocalDriver:
    """Runs workloads as supervised local processes, ``replicas.min`` of them each."""

    def __init__(self, settings: SchedulerSettings, report: Reporter) -> None:
        self._settings = settings
        self._report = report
        self._running: dict[str, _Running] = {}
        self._shims = settings.runtime_dir / "shims"
        self._records = settings.runtime_dir / "replicas"
        self._logs = settings.runtime_dir / "logs"
        images = (settings.runtime_dir / "images").resolve()
        # What an earlier scheduler left running: adopted by ensure(), else reaped.
        self._leftovers: dict[tuple[str, int], ReplicaRecord] = {}
        for path, record in load_records(self._records):
            if _ours(record, images):
                self._leftovers[(record.key, record.index)] = record
            else:
                path.unlink(missing_ok=True)

    def reap_leftovers(self) -> int:
        """Kill what an earlier scheduler left running that no workload adopted.

        Called after the first full reconcile pass, which adopted every replica still
        wanted. Returns how many process groups were killed.
        """
        killed = 0
        for record in self._leftovers.values():
            if record.alive():
                kill_group(record.pid)
                killed += 1
            (self._records / _file_name(record.key, record.index, "json")).unlink(missing_ok=True)
        self._leftovers.clear()
        if killed:
            log.warning("replicas.leftover.killed", groups=killed)
        return killed

    async def ensure(self, workload: Workload) -> bool:
        """Start the workload unless it already runs this image; True when something changed."""
        current = self._running.get(workload.key)
        if current is not None and current.workload.manifest_digest == workload.manifest_digest:
            if not self._due_for_retry(current):
                return False
            log.info("replica.retrying", key=workload.key)
        if current is not None:
            await self.remove(workload.key)
        replicas, adopted = [], []
        for index in range(workload.endpoint.replicas.min):
            record = self._leftovers.pop((workload.key, index), None)
            if record is not None and (
                record.manifest_digest != workload.manifest_digest or not record.alive()
            ):
                if record.alive():
                    kill_group(record.pid)  # wanted no more: another image under this key
                record = None
            replica = Replica(
                workload=workload,
                index=index,
                port=record.port if record else _free_port(workload.target.address or "127.0.0.1"),
                log_path=self._logs / _file_name(workload.key, index, "log"),
                record_path=self._records / _file_name(workload.key, index, "json"),
                pid=record.pid if record else None,
                started=record.started if record else None,
                # An adopted replica serves already: were it reported "deploying", the
                # router would lose its route until the check below finds it ready.
                state=WorkloadState.READY if record else WorkloadState.DEPLOYING,
            )
            replicas.append(replica)
            adopted.append(record is not None)
        running = _Running(workload, replicas, was_ready=any(adopted))
        self._running[workload.key] = running
        running.task = asyncio.create_task(
            self._run(running, adopted), name=f"workload {workload.key}"
        )
        if any(adopted):
            log.info("replicas.adopted", key=workload.key, count=sum(adopted))
        return True

    async def remove(self, key: str) -> bool:
        """Stop a workload's replicas and forget them."""
        running = self._running.pop(key, None)
        if running is None:
            return False
        if running.task is not None:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        grace = self._settings.stop_grace_s
        await asyncio.gather(*(replica.kill(grace) for replica in running.replicas))
        return True

    async def close(self) -> None:
        """Stop every replica (on shutdown), or leave them to the next scheduler if so set."""
        if not self._settings.keep_replicas_on_exit:
            await asyncio.gather(*(self.remove(key) for key in list(self._running)))
            return
        for running in self._running.values():
            if running.task is not None:
                running.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running.task
        log.info("replicas.left.running", workloads=len(self._running))

    def _due_for_retry(self, running: _Running) -> bool:
        """A workload that failed (or lost its supervisor) is tried again after a pause."""
        lost = running.task is None or running.task.done()
        failed = running.reported is not None and running.reported.state is WorkloadState.FAILED
        if not (lost or failed):
            return False
        failed_at = running.failed_at if running.failed_at is not None else 0.0
        return time.monotonic() - failed_at >= self._settings.retry_failed_after_s

    def workload(self, key: str) -> Workload | None:
        """The workload running (or tried) under ``key``."""
        running = self._running.get(key)
        return running.workload if running is not None else None

    def workload_keys(self) -> set[str]:
        """The workloads this driver runs (or tried to run)."""
        return set(self._running)

    async def logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        """The last ``tail`` lines of each replica of a workload (running or not), by replica."""
        # Files on disk, but logs grow large and disks stall: not on the event loop.
        return await asyncio.to_thread(self._read_logs, key, tail)

    def _read_logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        found = []
        prefix = _file_name(key, 0, "log").removesuffix("0.log")
        for path in self._logs.glob(f"{prefix}*.log") if self._logs.exists() else []:
            index = path.name.removeprefix(prefix).removesuffix(".log")
            if index.isdigit():
                found.append(ReplicaLogs(replica=int(index), lines=tail_lines(path, tail)))
        return sorted(found, key=lambda r: r.replica)

    async def _run(self, running: _Running, adopted: list[bool]) -> None:
        await self._update(running)
        try:
            image = await asyncio.to_thread(
                unpack_image,
                running.workload.version.image,  # type: ignore[arg-type]  # built versions only
                running.workload.manifest_digest,
                self._settings.runtime_dir / "images",
            )
        except DockyardError as exc:
            log.warning("replica.unpack.failed", key=running.workload.key, error=str(exc))
            for replica in running.replicas:
                replica.state, replica.reason = WorkloadState.FAILED, "could not unpack the image"
            running.failed_at = time.monotonic()
            await self._update(running, f"could not unpack the image: {exc}")
            return
        async with asyncio.TaskGroup() as tasks:
            for replica, was_adopted in zip(running.replicas, adopted, strict=True):
                tasks.create_task(self._supervise(running, replica, image, was_adopted))

    async def _supervise(
        self, running: _Running, replica: Replica, image: UnpackedImage, adopted: bool
    ) -> None:
        delays = self._settings.restart_backoff_s
        key = running.workload.key
        while True:
            if not adopted:
                await self._start(replica, image)
            adopted = False
            if not await replica.wait_ready(self._settings.readiness_timeout_s):
                await replica.kill(self._settings.stop_grace_s)
                running.failed_at = time.monotonic()
                await self._set(running, replica, WorkloadState.FAILED, self._not_ready(replica))
                return
            replica.up_since = time.monotonic()
            await self._set(running, replica, WorkloadState.READY, None)
            code = await replica.wait_exit()
            replica.record_path.unlink(missing_ok=True)
            if time.monotonic() - replica.up_since >= _STAYED_UP_S:
                replica.restarts = 0
            delay = delays[min(replica.restarts, len(delays) - 1)]
            replica.restarts += 1
            log.warning(
                "replica.exited", key=key, replica=replica.index, code=code, restart_in_s=delay
            )
            exited = "exited" if code is None else f"exited with code {code}"
            looping = "crash-looping: " if replica.restarts >= CRASH_LOOP_RESTARTS else ""
            await self._set(
                running,
                replica,
                WorkloadState.DEPLOYING,
                f"{looping}{exited}; restart {replica.restarts} in {delay:g} s; last lines:\n"
                f"{replica.last_log_lines()}",
            )
            await asyncio.sleep(delay)
            replica.port = free_port(replica.host)

    async def _start(self, replica: Replica, image: UnpackedImage) -> None:
        self._ensure_shims()
        command = [str(part) for part in image.config.get("Cmd", [])]
        workdir = image.root / str(image.config.get("WorkingDir", "/")).lstrip("/")
        env = process_environment(
            replica.workload, image, host=replica.host, port=replica.port, shims=self._shims
        )
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        with replica.log_path.open("ab") as log_file:
            # Its own session, and no parent-death signal: the replica outlives a scheduler
            # crash or restart, and the next scheduler adopts it.
            replica.process = await asyncio.create_subprocess_exec(
                *command,
                cwd=workdir,
                env=env,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        replica.pid, replica.started = replica.process.pid, None
        replica.save_record()
        log.info(
            "replica.started",
            key=replica.workload.key,
            replica=replica.index,
            pid=replica.pid,
            upstream=replica.upstream,
        )

    def _not_ready(self, replica: Replica) -> str:
        tail = replica.last_log_lines()
        if "address already in use" in tail.lower():
            return (
                "the server's port is already in use: on a local target every replica must "
                "listen on $PORT (or use a container target for hard-coded ports). Last lines:\n"
                + tail
            )
        code = replica.process.returncode if replica.process is not None else None
        if code is not None:
            return f"exited with code {code} before opening its port. Last lines:\n{tail}"
        return (
            f"never opened port {replica.port} on {replica.host} within "
            f"{self._settings.readiness_timeout_s:g} s; listen on $PORT. Last lines:\n{tail}"
        )

    async def _set(
        self, running: _Running, replica: Replica, state: WorkloadState, reason: str | None
    ) -> None:
        replica.state, replica.reason = state, reason
        await self._update(running)

    async def _update(self, running: _Running, reason: str | None = None) -> None:
        """Report the endpoint's state if its replicas' changed it; retried until published
        (a NATS outage must not end the supervision)."""
        async with running.lock:
            summary = summarise(
                [ReplicaStatus(r.index, r.state, r.upstream, r.reason) for r in running.replicas],
                was_ready=running.was_ready,
            )
            if reason is not None:
                summary = EndpointSummary(summary.state, summary.upstreams, reason)
            if summary == running.reported:
                return
            running.was_ready = running.was_ready or summary.state is WorkloadState.READY
            await report_until_published(
                self._report, _endpoint_state(running.workload, summary), running.workload.key
            )
            running.reported = summary

    def _ensure_shims(self) -> None:
        # ``python`` in an image command means this machine's interpreter (same minor version
        # as the image's base), not the platform's virtual environment.
        self._shims.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        for name in ("python", "python3"):
            link = self._shims / name
            if not link.exists():
                link.symlink_to(base)


def _free_port(host: str) -> int:
    """A free port on the target's address; :class:`PermanentError` when this machine has
    no such address."""
    try:
        return free_port(host)
    except OSError as exc:
        raise PermanentError(f"cannot listen on {host}: {exc.strerror or exc}") from exc


def _file_name(key: str, index: int, suffix: str) -> str:
    return f"{key.replace('/', '_')}.{index}.{suffix}"


def _ours(record: ReplicaRecord, images: Path) -> bool:
    """Whether a recorded process is alive and works inside our unpacked images."""
    if not record.alive():
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{record.pid}/cwd").readlink().resolve().is_relative_to(images)
    return False


def _endpoint_state(workload: Workload, summary: EndpointSummary) -> EndpointState:
    return workload.observed(summary.state, summary.upstreams, summary.reason)
