"""The container target driver: each replica its own container on a Docker-compatible engine.

Every replica runs in its own container and network namespace, so a server with a hard-coded
port works as well as one on ``$PORT``; the engine publishes that port on the target's address
(``127.0.3.1``, say) at a free host port of its choosing. Supervision is the local driver's: a
replica that never answers HTTP fails after the readiness deadline with its last log lines, one
that exits is replaced with backoff and reported crash-looping. The autoscaler sets the count
(:meth:`ContainerDriver.scale`): a container scaled away leaves the reported upstreams, then
is removed after the drain. Containers are labelled with
this installation's owner label and their workload, so a restarted scheduler adopts the ones
still running the image it wants and removes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable

from dockyard_common import DockyardError, WorkloadState, get_logger
from dockyard_common.logs import ReplicaLogs
from dockyard_common.valohai_metadata import VALOHAI_METADATA_ENV, valohai_metadata_json
from dockyard_scheduler.desired import Workload, endpoint_prefix
from dockyard_scheduler.drivers import Reporter, publish_then_retire, report_until_published
from dockyard_scheduler.drivers.container.engine import (
    LABEL_KEY,
    LABEL_MANIFEST,
    Engine,
    EngineError,
    EngineUnavailable,
    Running,
    key_hash,
)
from dockyard_scheduler.drivers.container.images import IMAGE_REPOSITORY, EngineImage, ImageCache
from dockyard_scheduler.drivers.container.replicas import (
    Replica,
    ReplicaGroup,
    answers_http,
    listens_reachably,
    not_listening_reason,
    replica_logs,
    socket_table_pid,
)
from dockyard_scheduler.drivers.container.resources import (
    container_notes,
    container_resources,
    ignored_gpus_note,
)
from dockyard_scheduler.drivers.sockets import listening_sockets
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["ContainerDriver"]

log = get_logger(__name__)

_LOG_TAIL_LINES = 20
_EARLY_EXITS_KEPT = 256
_EXIT_LOG_WAIT_S = 2.0
_STATUS_POLL_S = 5.0
"""How often a running replica's state is asked for, in case the events stream broke."""


class ContainerDriver:
    """Runs workloads as supervised containers, ``replicas.min`` of each to start with."""

    def __init__(
        self, settings: SchedulerSettings, report: Reporter, engine: Engine | None = None
    ) -> None:
        url = settings.container_engine_url or "unix:///var/run/docker.sock"
        self._settings = settings
        self._report = report
        self._engine = engine or Engine(url, settings.container_owner)
        self._groups: dict[str, ReplicaGroup] = {}
        self._adoptable: dict[str, list[Running]] = {}
        self._images = ImageCache(self._engine, settings.runtime_dir / "container-images")
        self._exits: dict[str, asyncio.Future[int]] = {}
        self._early_exits: dict[str, int] = {}
        self._orphans: set[asyncio.Future[None]] = set()
        self._starts: set[asyncio.Future[Running]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def reap_leftovers(self) -> int:
        """Sort out the containers a previous scheduler of this installation left behind.

        Running ones are kept for adoption: the first reconcile pass claims those that run
        the image their workload wants, and removes the rest as unwanted workloads. Stopped
        ones are removed now. Runs once at start-up, before any workload (blocking, brief).
        Returns how many containers were removed.
        """
        try:
            self._engine.connect()
            found = self._engine.ours()
        except EngineError as exc:  # no engine must not stop the scheduler: targets report it
            log.warning("containers.leftover.unchecked", reason=str(exc))
            return 0
        removed = 0
        for running in found:
            key = running.labels.get(LABEL_KEY)
            if running.running and key and running.host_port:
                self._adoptable.setdefault(key, []).append(running)
                continue
            try:
                self._engine.remove(running.id, 0)
                removed += 1
            except EngineError as exc:
                log.warning("container.remove.failed", container=running.id[:12], error=str(exc))
        adoptable = sum(len(c) for c in self._adoptable.values())
        log.info("containers.leftover", adoptable=adoptable, removed=removed)
        return removed

    async def ensure(self, workload: Workload) -> bool:
        """Start the workload unless it already runs this image; True when something changed."""
        current = self._groups.get(workload.key)
        if current is not None and current.workload.manifest_digest == workload.manifest_digest:
            if not self._due_for_retry(current):
                return False
            log.info("containers.retrying", key=workload.key)
        if current is not None:
            await self._remove(workload.key)
        await self._connect()
        count = max(workload.endpoint.replicas.min, 1)  # min 0: idled by the autoscaler
        group = ReplicaGroup(workload, [Replica(index) for index in range(count)])
        group.notes = container_notes(workload, container_resources(workload.endpoint))
        for replica, running in zip(
            group.replicas, await self._claim(workload, count), strict=False
        ):
            replica.container_id, replica.host_port = running.id, running.host_port
            replica.pid = running.pid
            log.info("container.adopted", key=workload.key, container=running.id[:12])
        self._groups[workload.key] = group
        for replica in group.replicas:
            replica.task = asyncio.create_task(
                self._supervise(group, replica), name=f"container {workload.key}#{replica.index}"
            )
        return True

    async def remove(self, key: str) -> bool:
        """Stop a workload's containers and forget it; False when there was none.

        The image made for it goes too once no other workload here runs it.
        """
        group = self._groups.get(key)
        removed = await self._remove(key)
        digest = group.workload.manifest_digest if group is not None else None
        made = self._images.pop(digest) if digest and not self._runs(digest) else None
        if made is not None:
            # Once made (it may still be in the making), unless a workload wants it again.
            if made.done():
                self._forget_image(made)
            else:
                made.add_done_callback(self._forget_image)
            await asyncio.gather(*self._orphans)
        return removed

    def _runs(self, digest: str) -> bool:
        return any(g.workload.manifest_digest == digest for g in self._groups.values())

    def _forget_image(self, made: asyncio.Task[EngineImage]) -> None:
        if made.cancelled() or made.exception() is not None:
            return
        reference = made.result().reference
        digest = f"sha256:{reference.rpartition(':')[2]}"
        if reference.startswith(f"{IMAGE_REPOSITORY}:") and not self._runs(digest):
            self._orphan(self._remove_image(reference))

    async def _remove_image(self, reference: str) -> None:
        try:
            await self._engine.call(self._engine.remove_image, reference)
        except EngineError as exc:  # left for the engine's own pruning
            log.warning("container.image.remove.failed", image=reference, error=str(exc))

    async def _remove(self, key: str) -> bool:
        group = self._groups.pop(key, None)
        leftovers = self._adoptable.pop(key, [])
        if group is None and not leftovers:
            return False
        ids = [running.id for running in leftovers]
        if group is not None:
            for publish in list(group.publishing):  # no report after the removal's
                publish.cancel()
            tasks = [r.task for r in group.replicas if r.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ids.extend(r.container_id for r in group.replicas if r.container_id is not None)
        await asyncio.gather(*(self._discard(container_id) for container_id in ids))
        # A replica cancelled while the engine started its container leaves one to remove.
        await asyncio.gather(*self._starts, return_exceptions=True)
        await asyncio.gather(*self._orphans)
        return True

    def workload_keys(self) -> set[str]:
        """The workloads this driver runs, tried to run, or found running at start-up."""
        return set(self._groups) | set(self._adoptable)

    def workload(self, key: str) -> Workload | None:
        """The workload running (or tried) under ``key``."""
        group = self._groups.get(key)
        return group.workload if group is not None else None

    async def logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        """The last ``tail`` lines of each replica's container; [] for a workload not run here."""
        group = self._groups.get(key)
        return [] if group is None else await replica_logs(self._engine, group, tail)

    def replica_count(self, key: str) -> int | None:
        """How many replicas (containers, starting ones included) the workload runs."""
        group = self._groups.get(key)
        return None if group is None else len(group.replicas)

    async def scale(self, key: str, count: int, reason: str) -> bool:
        """Run ``count`` containers of ``key``; False when nothing changed. Containers to
        remove leave the reported upstreams first and are removed ``scale_down_drain_s``
        after that report is published. Returns once the change is made; the report is
        published in the background (retried while NATS is away)."""
        group = self._groups.get(key)
        if group is None:
            return False
        current = len(group.replicas)
        group.desired, group.scaled_because = count, reason
        group.waking = current == 0 and count > 0
        leaving: list[Replica] = []
        if count > current:
            used = {replica.index for replica in group.replicas}
            indexes = [i for i in range(count + len(used)) if i not in used][: count - current]
            for index in indexes:
                replica = Replica(index)
                group.replicas.append(replica)
                replica.task = asyncio.create_task(
                    self._supervise(group, replica), name=f"container {key}#{index}"
                )
        elif count < current:
            order = sorted(group.replicas, key=lambda r: (r.ready, -r.index))
            leaving = order[: current - count]
            group.replicas = [r for r in group.replicas if r not in leaving]
            for replica in leaving:
                if replica.task is not None:
                    replica.task.cancel()
        log.info("containers.scaled", key=key, replicas=count, was=current, reason=reason)
        publish = asyncio.create_task(self._publish_then_retire(group, leaving))
        group.publishing.add(publish)
        publish.add_done_callback(group.publishing.discard)
        self._orphan(publish)
        return count != current

    async def _publish_then_retire(self, group: ReplicaGroup, leaving: list[Replica]) -> None:
        """Report the scaled group; then remove the containers it no longer names, once the
        routers had ``scale_down_drain_s`` to apply that report (cancelled: at once)."""

        async def retire() -> None:
            await asyncio.gather(*(r.task for r in leaving if r.task), return_exceptions=True)
            ids = [r.container_id for r in leaving if r.container_id is not None]
            await asyncio.gather(*(self._discard(container_id) for container_id in ids))

        await publish_then_retire(
            lambda: self._update(group),
            self._settings.scale_down_drain_s,
            retire if leaving else None,
        )

    async def close(self) -> None:
        """Stop every container this driver runs or found (keeping images), then disconnect."""
        await asyncio.gather(*(self._remove(key) for key in self.workload_keys()))
        self._images.cancel()
        with contextlib.suppress(EngineUnavailable):
            self._engine.close()

    async def _connect(self) -> None:
        await self._engine.call(self._engine.connect)
        self._loop = asyncio.get_running_loop()
        await self._engine.call(self._engine.watch_exits, self._exited_threadsafe)

    def _exited_threadsafe(self, container_id: str, code: int) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._exited, container_id, code)

    def _exited(self, container_id: str, code: int) -> None:
        future = self._exits.get(container_id)
        if future is None:
            # Died before its supervisor looked, or while being discarded: kept a while.
            self._early_exits[container_id] = code
            if len(self._early_exits) > _EARLY_EXITS_KEPT:
                self._early_exits.pop(next(iter(self._early_exits)))
        elif not future.done():
            future.set_result(code)

    def _watch(self, container_id: str) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if container_id in self._early_exits:
            future.set_result(self._early_exits.pop(container_id))
        self._exits[container_id] = future
        return future

    async def _claim(self, workload: Workload, count: int) -> list[Running]:
        """Adopt up to ``count`` leftover containers running this image; remove the others."""
        candidates = self._adoptable.pop(workload.key, [])
        claimed = [
            running
            for running in candidates
            if running.labels.get(LABEL_MANIFEST) == workload.manifest_digest
        ][:count]
        await asyncio.gather(
            *(self._discard(running.id) for running in candidates if running not in claimed)
        )
        return claimed

    def _due_for_retry(self, group: ReplicaGroup) -> bool:
        """A workload whose every replica failed is tried again after a pause."""
        if any(r.task is None or not r.task.done() for r in group.replicas):
            return False
        failed_at = group.failed_at if group.failed_at is not None else 0.0
        return time.monotonic() - failed_at >= self._settings.retry_failed_after_s

    async def _supervise(self, group: ReplicaGroup, replica: Replica) -> None:
        delays = self._settings.restart_backoff_s
        key = group.workload.key
        await self._update(group)
        try:
            image = await self._images.get(group.workload)
        except DockyardError as exc:  # the engine's errors, or the image's own
            log.warning("container.image.failed", key=key, error=str(exc))
            await self._fail(group, replica, f"could not prepare the image: {exc}")
            return
        adopted = replica.container_id is not None
        while True:
            container_id = replica.container_id
            if container_id is None:
                try:
                    container_id = await self._start(group, replica, image)
                except EngineError as exc:
                    log.warning("container.start.failed", key=key, error=str(exc))
                    await self._fail(group, replica, f"could not start a container: {exc}")
                    return
            exited = self._watch(container_id)
            if adopted:  # it may have died between the listing at start-up and now
                adopted = False
                try:
                    code = await self._engine.call(self._engine.exit_code, container_id)
                except EngineError as exc:  # gone, or the engine is away: replace it
                    log.warning(
                        "container.adopted.lost", container=container_id[:12], error=str(exc)
                    )
                    code = -1
                if code is not None:
                    self._exited(container_id, code)
            ready, reason = await self._wait_ready(group, replica, container_id, exited)
            if not ready:
                await self._discard(container_id)
                replica.container_id = None
                await self._fail(group, replica, reason)
                return
            replica.ready = True
            await self._update(group)
            code = await self._wait_exit(container_id, exited)
            replica.ready = False
            tail = await self._exit_tail(container_id)
            await self._discard(container_id)
            replica.container_id = None
            delay = delays[min(replica.restarts, len(delays) - 1)]
            replica.restarts += 1
            log.warning(
                "container.exited",
                key=key,
                code=code,
                restarts=replica.restarts,
                restart_in_s=delay,
            )
            group.note = (
                f"replica {replica.index} exited with code {code}; restart {replica.restarts} "
                f"in {delay} s (crash-looping if this repeats); last lines:\n{tail}"
            )
            await self._update(group)
            await asyncio.sleep(delay)

    async def _start(self, group: ReplicaGroup, replica: Replica, image: EngineImage) -> str:
        workload = group.workload
        port = workload.endpoint.listen_port
        resources = container_resources(workload.endpoint)
        name = f"{self._engine.owner}-{key_hash(workload.key)}-{replica.index}"
        starting = asyncio.ensure_future(
            self._engine.call(
                self._engine.start,
                image.reference,
                name=f"{name}-{secrets.token_hex(3)}",
                labels={LABEL_KEY: workload.key, LABEL_MANIFEST: workload.manifest_digest},
                address=group.address,
                container_port=port,
                config=image.config,
                environment={
                    "PORT": str(port),
                    "HOST": "0.0.0.0",  # noqa: S104 (inside the container's own namespace)
                    "VH_DEFAULT_PREFIX": endpoint_prefix(workload.version, workload.endpoint.name),
                    VALOHAI_METADATA_ENV: valohai_metadata_json(
                        workload.version,
                        workload.endpoint.name,
                        workload.target.name,
                        workload.target.public_url,
                    ),
                },
                limits=resources.limits,
            )
        )
        self._starts.add(starting)
        starting.add_done_callback(self._starts.discard)
        try:
            running = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Stopped while the engine was starting it: remove it once it exists, not leave
            # it running until the next scheduler start.
            starting.add_done_callback(self._discard_when_started)
            raise
        replica.container_id, replica.host_port = running.id, running.host_port
        replica.pid = running.pid
        if resources.gpus and not running.device_requests:
            note = ignored_gpus_note(resources.gpus, self._engine.url)
            if note not in group.notes:
                group.notes = (*group.notes, note)
        log.info(
            "container.started",
            key=workload.key,
            container=running.id[:12],
            upstream=f"http://{group.address}:{running.host_port}",
        )
        return running.id

    def _discard_when_started(self, starting: asyncio.Future[Running]) -> None:
        if not starting.cancelled() and starting.exception() is None:
            self._orphan(self._discard(starting.result().id))

    def _orphan(self, work: Awaitable[None]) -> None:
        """Clean-up no supervisor awaits any more; ``close`` waits for it."""
        task = asyncio.ensure_future(work)
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _wait_ready(
        self, group: ReplicaGroup, replica: Replica, container_id: str, exited: asyncio.Future[int]
    ) -> tuple[bool, str]:
        if replica.host_port is None:
            return False, "the engine published no host port for the container"
        port = group.workload.endpoint.listen_port
        # The socket table where the engine runs here (see replicas.py), else an HTTP probe.
        pid = socket_table_pid(replica.pid, container_id)
        waited = self._settings.readiness_timeout_s
        deadline = time.monotonic() + waited
        while time.monotonic() < deadline:
            if exited.done():
                tail = await self._exit_tail(container_id)
                return False, (
                    f"exited with code {exited.result()} before listening on port {port}. "
                    f"Last lines:\n{tail}"
                )
            sockets = listening_sockets(pid) if pid is not None else None
            if sockets is not None:
                if listens_reachably(sockets, port):
                    return True, ""
            elif await answers_http(group.address, replica.host_port):
                return True, ""
            await asyncio.sleep(0.05)
        tail = await self._log_tail(container_id)
        sockets = listening_sockets(pid) if pid is not None else None
        if sockets is not None:
            return False, f"{not_listening_reason(sockets, port, waited)}. Last lines:\n{tail}"
        return False, (
            f"never answered HTTP on port {port} within {waited:g} s; listen on $PORT (or the "
            f"declared port) on 0.0.0.0. Last lines:\n{tail}"
        )

    async def _wait_exit(self, container_id: str, exited: asyncio.Future[int]) -> int:
        while True:
            done, _ = await asyncio.wait({exited}, timeout=_STATUS_POLL_S)
            if done:
                return exited.result()
            try:
                code = await self._engine.call(self._engine.exit_code, container_id)
            except EngineError as exc:  # gone, or the engine is away: replace the replica
                log.warning(
                    "container.status.unknown", container=container_id[:12], error=repr(exc)
                )
                return -1
            if code is not None:
                return code

    async def _log_tail(self, container_id: str) -> str:
        try:
            return await self._engine.call(self._engine.log_tail, container_id, _LOG_TAIL_LINES)
        except EngineError as exc:
            return f"(no logs: {exc})"

    async def _exit_tail(self, container_id: str) -> str:
        """The last lines of a container that just exited: podman's log may lag its exit
        event, so an empty log is read again for a moment before it is taken as empty."""
        tail = await self._log_tail(container_id)
        for _ in range(int(_EXIT_LOG_WAIT_S / 0.1)):
            if tail:
                break
            await asyncio.sleep(0.1)
            tail = await self._log_tail(container_id)
        return tail

    async def _discard(self, container_id: str) -> None:
        self._exits.pop(container_id, None)
        self._early_exits.pop(container_id, None)
        try:
            await self._engine.call(self._engine.remove, container_id, self._settings.stop_grace_s)
        except EngineError as exc:
            log.warning("container.remove.failed", container=container_id[:12], error=str(exc))

    async def _fail(self, group: ReplicaGroup, replica: Replica, reason: str) -> None:
        replica.failed = reason
        group.failed_at = time.monotonic()
        await self._update(group)

    async def _update(self, group: ReplicaGroup) -> None:
        """Report the group's state if it changed, retrying until published: a NATS outage
        must not end the supervision."""
        async with group.lock:
            observed = group.observed()
            said = (observed, group.notes, group.desired, group.scaled_because)
            if group.reported == said:
                return
            group.reported = said
            group.rolled_out = group.rolled_out or observed[0] is WorkloadState.READY
            await report_until_published(
                self._report, group.endpoint_state(*observed), group.workload.key
            )
