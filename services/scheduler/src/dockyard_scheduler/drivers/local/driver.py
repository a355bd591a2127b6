"""The local target driver: each replica a supervised process in namespaces of its own.

Images run on this machine's Python: the image's file tree is unpacked once per manifest
digest and the command runs with the tree's code root as working directory, in the version's
own virtual environment (:mod:`.environments`). Each replica has network and mount namespaces
of its own (:mod:`.isolation`): it listens on its declared port, and the router reaches it
through a Unix socket. Where namespaces are unavailable, each local target binds its replicas
to its own address (``127.0.1.1``, ``127.0.2.1``, ...) on ``$PORT``. An endpoint starts
with ``replicas.min`` replicas per target; the scheduler's autoscaler changes the count with
:meth:`LocalDriver.scale`, which starts and stops replicas the same way (a replica leaves the
published upstreams, then drains, before it is stopped). A replica that never listens fails
with the ports it does listen on and its last log lines; one that exits is restarted with
backoff, and reported crash-looping when that repeats.

Replicas outlive the scheduler process: a restarted scheduler adopts those whose workload is
still wanted (same manifest digest), every serving one of them (those the autoscaler added
too), and reaps the rest, retiring ones included, after its first full pass. SIGTERM
stops them, unless ``keep_replicas_on_exit`` is set (a scheduler upgrade without downtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common import DockyardError, PermanentError, WorkloadState, get_logger
from dockyard_common.logs import ReplicaLogs
from dockyard_common.runtime.processes import free_port
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers import Reporter, publish_then_retire, report_until_published
from dockyard_scheduler.drivers.local.environments import (
    Environment,
    ensure_environment,
    interpreter,
    uv_binary,
)
from dockyard_scheduler.drivers.local.images import UnpackedImage, unpack_image
from dockyard_scheduler.drivers.local.isolation import (
    egress_command,
    launcher_command,
    namespaces_unavailable,
    private_directory,
    socket_directory,
)
from dockyard_scheduler.drivers.local.notes import local_notes, memory_limit_mb
from dockyard_scheduler.drivers.local.replicas import (
    Replica,
    ReplicaRecord,
    Sandbox,
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
from dockyard_scheduler.drivers.sockets import listening_ports
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
    image: UnpackedImage | None = None
    environment: Environment | None = None
    group: asyncio.TaskGroup | None = None
    """Where the replicas' supervisions run (set once image and environment are ready)."""
    supervisors: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    retiring: set[int] = field(default_factory=set)
    """Indexes of replicas scaled down and not stopped yet: a new replica takes another
    (its socket, log and record are named by its index)."""
    desired: int | None = None
    scaled_because: str | None = None
    reported_scale: tuple[int | None, str | None] = (None, None)
    publishing: set[asyncio.Task[None]] = field(default_factory=set)
    """Reports of scale() under way (each then retires what it scaled down)."""
    waking: bool = False
    """Started from zero: reported idle, not deploying, until a replica is ready (the
    routers hold its requests meanwhile rather than refuse them)."""


class LocalDriver:
    """Runs workloads as supervised local processes, ``replicas.min`` of them each."""

    def __init__(self, settings: SchedulerSettings, report: Reporter) -> None:
        self._settings = settings
        self._report = report
        self._running: dict[str, _Running] = {}
        self._shims = settings.runtime_dir / "shims"
        self._records = settings.runtime_dir / "replicas"
        self._logs = settings.runtime_dir / "logs"
        self._retiring: set[asyncio.Task[None]] = set()
        self._envs = settings.runtime_dir / "envs"
        self._homes = settings.runtime_dir / "homes"
        self._roots = settings.runtime_dir / "roots"
        self._env_locks: dict[str, asyncio.Lock] = {}
        self._no_namespaces = (
            namespaces_unavailable() if settings.local_namespaces else "turned off by a setting"
        )
        self._sockets = socket_directory(settings.runtime_dir)
        if self._no_namespaces:
            log.warning("replicas.namespaces.unavailable", why=self._no_namespaces)
        images = (settings.runtime_dir / "images").resolve()
        # What an earlier scheduler left running: adopted by ensure(), else reaped.
        self._leftovers: dict[tuple[str, int], ReplicaRecord] = {}
        for path, record in load_records(self._records):
            if _ours(record, images, self._roots.resolve()):
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
        # min 0 starts with one all the same: the autoscaler idles it after idle_s. Every
        # replica an earlier scheduler left serving is adopted, those its autoscaler added
        # too (killed by the reaping instead, they would fail the requests routed to them).
        # A retiring one is left to the reaping, and its index (its socket) to it.
        floor = max(workload.endpoint.replicas.min, 1)
        left: set[int] = set()
        retiring: set[int] = set()
        for (key, index), found in self._leftovers.items():
            if key == workload.key:
                (retiring if found.retiring else left).add(index)
        free = (i for i in itertools.count() if i not in retiring)
        lowest = {next(free) for _ in range(floor)}
        wanted = sorted(lowest | left)[: max(workload.endpoint.replicas.max, floor)]
        for index in wanted:
            record = self._leftovers.pop((workload.key, index), None)
            if record is not None and (
                record.manifest_digest != workload.manifest_digest or not record.alive()
            ):
                if record.alive():
                    kill_group(record.pid)  # wanted no more: another image under this key
                record = None
            replica = self._fresh_replica(workload, index)
            if record is not None:
                replica.port, replica.pid, replica.started = record.port, record.pid, record.started
                # An adopted replica serves already: were it reported "deploying", the
                # router would lose its route until the check below finds it ready.
                replica.state = WorkloadState.READY
            replicas.append(replica)
            adopted.append(record is not None)
        running = _Running(workload, replicas, was_ready=any(adopted), retiring=retiring)
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
        for publish in list(running.publishing):  # no report after the removal's
            publish.cancel()
        await asyncio.gather(*running.publishing, return_exceptions=True)
        grace = self._settings.stop_grace_s
        await asyncio.gather(*(replica.kill(grace) for replica in running.replicas))
        return True

    def replica_count(self, key: str) -> int | None:
        """How many replicas the workload runs (starting ones included); None when none
        runs under ``key`` or it cannot be scaled yet (its image is being prepared)."""
        running = self._running.get(key)
        if running is None or running.group is None:
            return None
        return len(running.replicas)

    async def scale(self, key: str, count: int, reason: str) -> bool:
        """Run ``count`` replicas of the workload ``key``; False when nothing changed.

        New replicas start as the first ones did. Replicas to stop leave the endpoint's
        reported upstreams first; ``scale_down_drain_s`` counts from when that report is
        published (the routers apply it after the API folds it into the fact, well under
        the default 2 s), for them to stop sending and the requests under way to end; then
        the replicas are stopped. Returns once the change is made: the report is published
        in the background (retried while NATS is away), so a caller holding the
        reconciler's lock does not hold it through an outage.
        """
        running = self._running.get(key)
        if running is None or running.group is None or running.image is None:
            return False
        environment = running.environment
        if environment is None:
            return False
        current = len(running.replicas)
        running.desired, running.scaled_because = count, reason
        running.waking = current == 0 and count > 0
        leaving: list[Replica] = []
        if count > current:
            used = {replica.index for replica in running.replicas} | running.retiring
            indexes = [i for i in range(count + len(used)) if i not in used][: count - current]
            for index in indexes:
                replica = self._fresh_replica(running.workload, index)
                running.replicas.append(replica)
                running.supervisors[index] = running.group.create_task(
                    self._supervise(
                        running,
                        replica,
                        running.image,
                        self._sandbox(running.workload, replica, environment),
                        False,
                    )
                )
        elif count < current:
            # Those not serving go first, then the most recently added.
            order = sorted(
                running.replicas, key=lambda r: (r.state is WorkloadState.READY, -r.index)
            )
            leaving = order[: current - count]
            running.replicas = [r for r in running.replicas if r not in leaving]
            for replica in leaving:
                running.retiring.add(replica.index)
                replica.retiring = True
                replica.save_record()  # a scheduler restarted meanwhile stops it
                task = running.supervisors.pop(replica.index, None)
                if task is not None:
                    task.cancel()
        log.info("replicas.scaled", key=key, replicas=count, was=current, reason=reason)
        publish = asyncio.create_task(self._publish_then_retire(running, leaving))
        for tasks in (self._retiring, running.publishing):
            tasks.add(publish)
            publish.add_done_callback(tasks.discard)
        return count != current

    def _fresh_replica(self, workload: Workload, index: int) -> Replica:
        """A replica to start (not adopted), as ensure() makes them."""
        isolated = self._no_namespaces is None
        return Replica(
            workload=workload,
            index=index,
            port=workload.endpoint.listen_port
            if isolated
            else _free_port(workload.target.address or "127.0.0.1"),
            socket=self._sockets / _socket_name(workload.key, index) if isolated else None,
            log_path=self._logs / _file_name(workload.key, index, "log"),
            record_path=self._records / _file_name(workload.key, index, "json"),
        )

    async def _publish_then_retire(self, running: _Running, leaving: list[Replica]) -> None:
        """Report the scaled endpoint; then stop the replicas it no longer names, once the
        routers had ``scale_down_drain_s`` to apply that report (cancelled: at once)."""

        async def retire() -> None:
            await asyncio.gather(*(r.kill(self._settings.stop_grace_s) for r in leaving))
            running.retiring -= {r.index for r in leaving}
            retired = [r.index for r in leaving]
            log.info("replicas.retired", key=running.workload.key, replicas=retired)

        await publish_then_retire(
            lambda: self._update(running),
            self._settings.scale_down_drain_s,
            retire if leaving else None,
        )

    async def close(self) -> None:
        """Stop every replica (on shutdown), or leave them to the next scheduler if so set."""
        # Scaled down: stopped after their drain, or now if the report cannot be published.
        if self._retiring:
            settings = self._settings
            bound = settings.scale_down_drain_s + settings.stop_grace_s + 5.0
            _, late = await asyncio.wait(set(self._retiring), timeout=bound)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
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
            environment = await self._environment(running.workload)
        except DockyardError as exc:
            log.warning("replica.prepare.failed", key=running.workload.key, error=str(exc))
            for replica in running.replicas:
                replica.state, replica.reason = WorkloadState.FAILED, str(exc)
            running.failed_at = time.monotonic()
            await self._update(running, str(exc))
            return
        running.image, running.environment = image, environment
        async with asyncio.TaskGroup() as tasks:
            running.group = tasks
            for replica, was_adopted in zip(running.replicas, adopted, strict=True):
                sandbox = self._sandbox(running.workload, replica, environment)
                running.supervisors[replica.index] = tasks.create_task(
                    self._supervise(running, replica, image, sandbox, was_adopted)
                )
            # Open until remove() cancels it: scale() adds supervisions to the group.
            await asyncio.Event().wait()

    def _sandbox(self, workload: Workload, replica: Replica, environment: Environment) -> Sandbox:
        """What a replica runs in: the version's environment, a home, the shims, its socket."""
        return Sandbox(
            environment=environment.path,
            dependencies=environment.dependencies,
            home=self._homes / _file_name(workload.key, replica.index, "home"),
            shims=self._shims,
            socket=replica.socket,
        )

    async def _environment(self, workload: Workload) -> Environment:
        """The version's own environment, made once (replicas on two targets share it)."""
        image = workload.version.image
        if image is None:  # desired_workloads gives built versions only
            raise PermanentError("the version has no image yet")
        # One at a time per set of dependencies (versions sharing it wait for the first)
        # and per version (its replicas on two targets).
        house = next((x.digest for x in image.layers if x.role.startswith("wheels:")), None)
        key = house or workload.manifest_digest
        async with self._env_locks.setdefault(key, asyncio.Lock()):
            return await asyncio.to_thread(
                ensure_environment, image, workload.manifest_digest, self._envs
            )

    async def _supervise(
        self,
        running: _Running,
        replica: Replica,
        image: UnpackedImage,
        sandbox: Sandbox,
        adopted: bool,
    ) -> None:
        delays = self._settings.restart_backoff_s
        key = running.workload.key
        while True:
            if not adopted:
                await self._start(replica, image, sandbox)
            adopted = False
            if not await replica.wait_ready(self._settings.readiness_timeout_s):
                # Why, before our own stop signal becomes the process's exit.
                reason = await self._not_ready(replica)
                await replica.kill(self._settings.stop_grace_s)
                running.failed_at = time.monotonic()
                await self._set(running, replica, WorkloadState.FAILED, reason)
                return
            replica.up_since = time.monotonic()
            await self._set(running, replica, WorkloadState.READY, None)
            code = await replica.wait_exit()
            replica.record_path.unlink(missing_ok=True)
            if replica.socket is not None:  # its launcher cannot: the path is outside its root
                replica.socket.unlink(missing_ok=True)
            # What the server left in its group (its children, the network helper) goes too.
            if replica.pid is not None:
                kill_group(replica.pid)
            if time.monotonic() - replica.up_since >= _STAYED_UP_S:
                replica.restarts = 0
            delay = delays[min(replica.restarts, len(delays) - 1)]
            replica.restarts += 1
            log.warning(
                "replica.exited", key=key, replica=replica.index, code=code, restart_in_s=delay
            )
            tail = replica.last_log_lines()
            exited = "exited" if code is None else f"exited with code {code}"
            exited += _memory_hint(replica, tail)
            looping = "crash-looping: " if replica.restarts >= CRASH_LOOP_RESTARTS else ""
            await self._set(
                running,
                replica,
                WorkloadState.DEPLOYING,
                f"{looping}{exited}; restart {replica.restarts} in {delay:g} s; last lines:\n"
                f"{tail}",
            )
            await asyncio.sleep(delay)
            if replica.socket is None:
                replica.port = free_port(replica.host)

    async def _start(self, replica: Replica, image: UnpackedImage, sandbox: Sandbox) -> None:
        self._ensure_shims()
        command = [str(part) for part in image.config.get("Cmd", [])]
        workdir = image.root / str(image.config.get("WorkingDir", "/")).lstrip("/")
        host = replica.host if sandbox.socket is None else "0.0.0.0"  # noqa: S104  # its own
        env = process_environment(replica.workload, image, sandbox, host=host, port=replica.port)
        (sandbox.home / "tmp").mkdir(parents=True, exist_ok=True)
        if sandbox.socket is not None:
            private_directory(sandbox.socket.parent)
            root = self._roots / _file_name(replica.workload.key, replica.index, "root")
            root.mkdir(parents=True, exist_ok=True)
            # What the replica writes into its image tree and environment: fresh at each
            # start, as a new container's layer is.
            layers = self._roots / _file_name(replica.workload.key, replica.index, "layers")
            await asyncio.to_thread(shutil.rmtree, layers, True)
            command = launcher_command(
                command,
                socket=sandbox.socket,
                port=replica.port,
                cwd=workdir,
                root=root,
                readonly=[sandbox.shims, *([sandbox.dependencies] if sandbox.dependencies else [])],
                writable=[sandbox.home],
                overlays=[
                    (image.root, layers / "image"),
                    (sandbox.environment, layers / "environment"),
                ],
                memory_bytes=_megabytes(memory_limit_mb(replica.workload.endpoint)),
            )
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The launcher holds the write end of this pipe as long as it lives; the network
        # helper exits when it reads the end of it.
        lifeline = os.pipe() if sandbox.socket is not None else None
        open_ends = list(lifeline or ())
        try:
            with replica.log_path.open("ab") as log_file:
                # Its own session, and no parent-death signal: the replica outlives a
                # scheduler crash or restart, and the next scheduler adopts it.
                replica.process = await asyncio.create_subprocess_exec(
                    *command,
                    cwd=workdir,
                    env=env,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    pass_fds=lifeline[1:] if lifeline else (),
                )
            replica.pid, replica.started = replica.process.pid, None
            replica.save_record()
            if lifeline is not None:
                os.close(open_ends.pop())  # the launcher's end: only the launcher holds it now
                await self._give_egress(replica.process.pid, lifeline[0], replica.log_path)
        finally:
            for end in open_ends:  # each once: a number closed twice may be another file's
                os.close(end)
        log.info(
            "replica.started",
            key=replica.workload.key,
            replica=replica.index,
            pid=replica.pid,
            upstream=replica.upstream,
        )

    async def _give_egress(self, pid: int, lifeline: int, log_path: Path) -> None:
        """Start slirp4netns for the replica's network namespace; it ends when ``lifeline``
        (a pipe the launcher holds open) does. Only once the launcher has left our namespace:
        joined too early it would configure this machine's own."""
        command = egress_command(pid, lifeline)
        if command is None:
            return
        ours = os.readlink("/proc/self/ns/net")  # /proc: never blocks
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{pid}/ns/net") != ours:
                    break
            except OSError:
                return  # the launcher is gone already
            await asyncio.sleep(0.005)
        else:
            log.warning("replica.egress.skipped", pid=pid, why="no network namespace of its own")
            return
        try:
            # Its words go to the replica's log: a network that did not come up is told there.
            with log_path.open("ab") as log_file:
                await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(lifeline,),
                )
        except OSError as exc:
            log.warning("replica.egress.failed", pid=pid, error=str(exc))

    async def _not_ready(self, replica: Replica) -> str:
        """Why a replica is not ready: how it exited, or which ports it listens on instead."""
        tail = replica.last_log_lines()
        port = replica.port
        if replica.process is not None and not replica.running():
            # Gone: its exit code comes once the event loop's watcher has reaped it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await replica.process.wait()
        if replica.socket is None and "address already in use" in tail.lower():
            return (
                "the server's port is already in use: without network namespaces every "
                "replica must listen on $PORT. Last lines:\n" + tail
            )
        code = replica.process.returncode if replica.process is not None else None
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint} before listening on port {port}. Last lines:\n{tail}"
        if code is not None:
            return (
                f"exited with code {code}{_memory_hint(replica, tail)} before listening on port "
                f"{port}. Last lines:\n{tail}"
            )
        if replica.socket is None:
            return (
                f"never opened port {port} on {replica.host} within "
                f"{self._settings.readiness_timeout_s:g} s; listen on $PORT. Last lines:\n{tail}"
            )
        ports = listening_ports(replica.pid) if replica.pid is not None else []
        elsewhere = (
            f"it listens on {', '.join(map(str, ports))} instead (set the endpoint's port)"
            if ports
            else "it listens on no TCP port"
        )
        return (
            f"running, but not listening on its declared port {port} after "
            f"{self._settings.readiness_timeout_s:g} s: {elsewhere}. Last lines:\n{tail}"
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
            if (not running.replicas and running.desired == 0) or (
                running.waking and summary.state is WorkloadState.DEPLOYING
            ):
                summary = EndpointSummary(WorkloadState.IDLE, [], None)
            running.waking = running.waking and summary.state is WorkloadState.IDLE
            scale = (running.desired, running.scaled_because)
            if summary == running.reported and scale == running.reported_scale:
                return
            running.was_ready = running.was_ready or summary.state is WorkloadState.READY
            state = running.workload.observed(summary.state, summary.upstreams, summary.reason)
            notes = local_notes(running.workload, self._no_namespaces)
            state = state.model_copy(
                update={"notes": notes, "desired_replicas": scale[0], "scaled_because": scale[1]}
            )
            await report_until_published(self._report, state, running.workload.key)
            running.reported, running.reported_scale = summary, scale

    def _ensure_shims(self) -> None:
        # After the version's environment on PATH: uv, as python images with uv have it.
        self._shims.mkdir(parents=True, exist_ok=True)
        for name, target in (
            ("python", interpreter()),
            ("python3", interpreter()),
            ("uv", uv_binary()),
        ):
            link = self._shims / name
            if not link.exists():
                link.symlink_to(target)


def _free_port(host: str) -> int:
    """A free port on the target's address; :class:`PermanentError` when this machine has
    no such address."""
    try:
        return free_port(host)
    except OSError as exc:
        raise PermanentError(f"cannot listen on {host}: {exc.strerror or exc}") from exc


def _file_name(key: str, index: int, suffix: str) -> str:
    return f"{key.replace('/', '_')}.{index}.{suffix}"


def _memory_hint(replica: Replica, tail: str) -> str:
    """Why a replica whose allocations failed under its memory limit exited."""
    memory = memory_limit_mb(replica.workload.endpoint)
    if memory is None or "MemoryError" not in tail:
        return ""
    return f" (out of memory: resources.memory is {memory:g} MB)"


def _megabytes(amount: float | None) -> int | None:
    return None if amount is None else int(amount * 1024 * 1024)


def _socket_name(key: str, index: int) -> str:
    """Short: a socket's whole path has 107 bytes at most."""
    return f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.{index}.sock"


def _ours(record: ReplicaRecord, images: Path, roots: Path) -> bool:
    """Whether a recorded process is alive and ours: one working inside our unpacked images,
    or a launcher building its root in ours (its own root hides its working directory)."""
    if not record.alive():
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{record.pid}/cwd").readlink().resolve().is_relative_to(images):
            return True
        command = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
        config = json.loads(command[-2]) if len(command) > 1 and command[-2][:1] == b"{" else {}
        root = config.get("root") if isinstance(config, dict) else None
        return isinstance(root, str) and Path(root).is_relative_to(roots)
    return False
