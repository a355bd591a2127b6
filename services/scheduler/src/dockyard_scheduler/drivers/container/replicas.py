"""The replicas of a container workload: what they add up to, how readiness is probed, and
their logs.

Readiness is read from the container's socket table where the engine runs on this machine
(the declared port listens, on an address the published port reaches), as on local targets:
no request is spent on it, and a replica that listens elsewhere says where. On an engine
elsewhere, an HTTP request to the published port probes it instead.

``ReplicaGroup.observed`` is a pure decision over the replicas' states (no I/O): the driver
reports it whenever it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common import DockyardError, EndpointState, WorkloadState
from dockyard_common.logs import ReplicaLogs
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.container.engine import Engine
from dockyard_scheduler.drivers.sockets import Listening

__all__ = [
    "Replica",
    "ReplicaGroup",
    "answers_http",
    "listens_reachably",
    "not_listening_reason",
    "replica_logs",
    "socket_table_pid",
]

_PROBE = b"GET /_dockyard/health HTTP/1.0\r\nHost: dockyard-probe\r\n\r\n"


@dataclass
class Replica:
    """One container of a workload, as its supervisor last saw it."""

    index: int
    container_id: str | None = None
    host_port: int | None = None
    ready: bool = False
    failed: str | None = None
    """Why it failed for good (its supervisor ended); None while it runs or retries."""
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    pid: int | None = None
    """The container's first process, as the engine numbers it."""


@dataclass
class ReplicaGroup:
    """The replicas of one workload, reported as one endpoint state."""

    workload: Workload
    replicas: list[Replica]
    note: str | None = None
    """The latest crash, said while no replica serves."""
    failed_at: float | None = None
    notes: tuple[str, ...] = ()
    """What the target made of the endpoint (its Python, where it listens, what it did not
    honour): reported with every state."""
    reported: tuple[object, ...] | None = None
    """What was last reported: (observed, notes, desired, scaled_because)."""
    desired: int | None = None
    """The count the autoscaler last asked for, and why: reported with every state."""
    scaled_because: str | None = None
    waking: bool = False
    """Started from zero: idle, not deploying, until a replica serves."""
    publishing: set[asyncio.Task[None]] = field(default_factory=set)
    """Reports of a scale() under way (each then removes what it scaled down)."""
    rolled_out: bool = False
    """Whether it has been reported ready: then a replica down leaves it ready with fewer."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def address(self) -> str:
        """The host address the replicas' ports are published on."""
        return self.workload.target.address or "127.0.0.1"

    def observed(self) -> tuple[WorkloadState, tuple[str, ...], str | None]:
        """(state, upstreams, reason).

        Ready once every replica has come up (or failed for good) and one serves, then for as
        long as any serves, with the upstreams of those that do; failed once all failed;
        idle once the autoscaler took it to zero.
        """
        if not self.replicas and self.desired == 0:
            return WorkloadState.IDLE, (), None
        upstreams = tuple(
            sorted(f"http://{self.address}:{r.host_port}" for r in self.replicas if r.ready)
        )
        if self.waking and not upstreams and not all(r.failed for r in self.replicas):
            return WorkloadState.IDLE, (), None
        self.waking = False
        failures = [r.failed for r in self.replicas if r.failed is not None]
        settled = all(r.ready or r.failed is not None for r in self.replicas)
        if upstreams and (settled or self.rolled_out):
            return WorkloadState.READY, upstreams, None
        if failures and len(failures) == len(self.replicas):
            return WorkloadState.FAILED, (), "\n".join(dict.fromkeys(failures))
        return WorkloadState.DEPLOYING, (), self.note or next(iter(failures), None)

    def endpoint_state(
        self, state: WorkloadState, upstreams: tuple[str, ...], reason: str | None
    ) -> EndpointState:
        """The report of ``state`` for this workload, with the target's notes."""
        observed = self.workload.observed(state, upstreams, reason)
        return observed.model_copy(
            update={
                "notes": list(self.notes),
                "desired_replicas": self.desired,
                "scaled_because": self.scaled_because,
            }
        )


async def replica_logs(engine: Engine, group: ReplicaGroup, tail: int) -> list[ReplicaLogs]:
    """The last ``tail`` lines of each replica's current container, read concurrently on the
    engine's threads. A replica without one (between restarts, or failed) or whose container
    cannot be read gets an entry saying why, so one replica never hides the others' lines."""

    async def read(replica: Replica) -> ReplicaLogs:
        container_id = replica.container_id
        if container_id is None:
            why = replica.failed or "no container runs for this replica now (it is restarting)"
            return ReplicaLogs(replica=replica.index, lines=[], error=why)
        try:
            lines = await engine.call(engine.log_lines, container_id, tail)
        except DockyardError as exc:
            return ReplicaLogs(
                replica=replica.index, lines=[], name=container_id[:12], error=str(exc)
            )
        return ReplicaLogs(replica=replica.index, lines=lines, name=container_id[:12])

    return list(await asyncio.gather(*(read(replica) for replica in group.replicas)))


async def answers_http(host: str, port: int) -> bool:
    """Whether an HTTP server answers at all (any status): the engine's port forwarder may
    accept a connection before the server inside listens, so a connect alone proves nothing."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_PROBE)
        await writer.drain()
        return bool(await asyncio.wait_for(reader.read(1), 2.0))
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def socket_table_pid(pid: int | None, container_id: str) -> int | None:
    """``pid`` when this machine's ``/proc`` shows it in the container's cgroup (the engine
    runs here, in our pid namespace), so its socket table is the container's; else None."""
    if not pid:
        return None
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    return pid if container_id in cgroup else None


def listens_reachably(sockets: list[Listening], port: int) -> bool:
    """Whether ``port`` listens on an address the engine's published port reaches. Pure."""
    return any(s.port == port and not s.loopback_only for s in sockets)


def not_listening_reason(sockets: list[Listening], port: int, waited_s: float) -> str:
    """Why a running container is not ready, from its socket table. Pure."""
    on_port = sorted({s.address for s in sockets if s.port == port})
    if on_port:
        return (
            f"running, but it listens on its declared port {port} on {', '.join(on_port)} "
            "only, which the container's published port cannot reach: listen on 0.0.0.0 "
            "(uvicorn and flask: --host 0.0.0.0)"
        )
    ports = sorted({s.port for s in sockets})
    elsewhere = (
        f"it listens on {', '.join(map(str, ports))} instead (set the endpoint's port)"
        if ports
        else "it listens on no TCP port"
    )
    return (
        f"running, but not listening on its declared port {port} after {waited_s:g} s: {elsewhere}"
    )
