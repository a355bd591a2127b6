"""A router process of a test's own, and what it routes to: replicas that answer their name,
and a state of record (a NATS of the test's own) that names them.

The record is written as the API writes it (versions, aliases and regions in their KV
buckets), so a router follows it as it follows the real one; nothing else acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_builder.runner import RUNNER_FILES
from dockyard_common import (
    Alias,
    AliasTarget,
    EndpointState,
    RouterHeartbeat,
    Version,
    VersionStatus,
    WorkloadState,
)
from dockyard_common.models import CodeRef, EndpointSpec
from dockyard_common.platform_facts import Region
from dockyard_common.runtime import ResourceStore, connect_nats, provision_jetstream
from dockyard_common.runtime.processes import stop_with_parent
from dockyard_common.subjects import (
    ALIASES_BUCKET,
    REGIONS_BUCKET,
    ROUTER_HEARTBEAT_SUBJECT,
    VERSIONS_BUCKET,
    alias_key,
    region_key,
    version_key,
)
from dockyard_platform.servers import ServerProcess, free_port, start_nats
from tests.harness.fixtures import Names
from tests.harness.procs import alive, descendants, parent_of

__all__ = [
    "PrivateRecord",
    "RouterProcess",
    "endpoint_states",
    "listen_for_routers",
    "private_record",
    "raw_exchange",
    "record_alias",
    "record_endpoint",
    "record_region",
    "record_version",
    "replica",
    "start_router",
    "workers_of",
]


@dataclass(frozen=True)
class PrivateRecord:
    """A NATS server of the test's own (JetStream provisioned) and a connection to it."""

    url: str
    client: NatsClient
    js: JetStreamContext
    servers: list[ServerProcess]
    """The NATS server, and any the test started again in its place (the last runs)."""
    data_dir: Path

    @property
    def port(self) -> int:
        """The server's port (the same after a restart)."""
        return int(self.url.rpartition(":")[2])

    def stop_server(self) -> None:
        """NATS away (the client reconnects once it is back)."""
        self.servers[-1].stop()

    def start_server(self) -> None:
        """NATS back on its port, with the record it held."""
        self.servers.append(start_nats(self.data_dir, port=self.port))


@asynccontextmanager
async def private_record(data_dir: Path) -> AsyncIterator[PrivateRecord]:
    """A state of record no platform of the session acts on, for the block."""
    servers = [start_nats(data_dir)]
    client = await connect_nats(servers[0].url, name="dockyard-tests-record")
    try:
        js = client.jetstream()
        await provision_jetstream(js)
        yield PrivateRecord(servers[0].url, client, js, servers, data_dir)
    finally:
        await client.close()
        for server in servers:
            server.stop()


async def listen_for_routers(nats_client: NatsClient) -> list[int]:
    """Process ids of the router processes heard from from now on, in the order first heard
    (the list grows as they beat)."""
    heard: list[int] = []

    async def on_beat(msg: Msg) -> None:
        pid = int(RouterHeartbeat.model_validate_json(msg.data).process.rsplit("-", 1)[1])
        if pid not in heard:
            heard.append(pid)

    await nats_client.subscribe(ROUTER_HEARTBEAT_SUBJECT, cb=on_beat)
    return heard


async def workers_of(parent: int, heard: list[int], count: int, within_s: float) -> list[int]:
    """The first ``count`` live workers of ``parent`` heard from, waiting for them (a worker
    beats once it serves)."""
    deadline = time.monotonic() + within_s
    while True:
        workers = [pid for pid in heard if parent_of(pid) == parent and alive(pid)]
        if len(workers) >= count:
            return workers[:count]
        assert time.monotonic() < deadline, f"workers heard: {workers}, all heard: {heard}"
        await asyncio.sleep(0.1)


REPLICA = """
import sys, dockyard_server
NAME = sys.argv[2].encode()

def app(environ, start_response):
    body = NAME
    if environ["PATH_INFO"] == "/forwarded-host":
        body = environ.get("HTTP_X_FORWARDED_HOST", "").encode()
    elif environ["PATH_INFO"] == "/read-body":
        body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

dockyard_server.serve(app, "127.0.0.1", int(sys.argv[1]), max_requests=8)
"""
"""A replica: answers its name (or the X-Forwarded-Host it received, at /forwarded-host; the
whole body, read before answering, at /read-body)."""


@contextmanager
def replica(work_dir: Path, name: str) -> Iterator[str]:
    """A replica process answering ``name``, for the block; its URL."""
    script = work_dir / "replica.py"
    script.write_text(REPLICA)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), name],
        env={**os.environ, "PYTHONPATH": str(RUNNER_FILES)},
    )
    try:
        _wait_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def _wait_listening(port: int, process: subprocess.Popen[bytes], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert process.poll() is None, f"the replica on {port} exited"
            assert time.monotonic() < deadline, f"nothing listens on {port} after {within_s} s"
            time.sleep(0.02)


def endpoint_states(
    names: Names,
    version: str,
    upstreams: list[str],
    *,
    state: WorkloadState = WorkloadState.READY,
    endpoints: tuple[str, ...] = ("predict",),
    target: str = "local-eu",
    region: str = "eu",
) -> list[EndpointState]:
    """The states of ``endpoints`` of ``version`` on one target, served by ``upstreams``
    when ready: what the API folds in from the scheduler's reports."""
    return [
        EndpointState(
            owner=names.owner,
            project=names.project,
            deployment=names.deployment,
            version=version,
            endpoint=endpoint,
            target=target,
            region=region,
            state=state,
            upstreams=upstreams if state is WorkloadState.READY else [],
        )
        for endpoint in endpoints
    ]


async def record_version(
    js: JetStreamContext,
    names: Names,
    version: str,
    upstreams: list[str],
    *,
    state: WorkloadState = WorkloadState.READY,
    endpoints: tuple[str, ...] = ("predict",),
    states: list[EndpointState] | None = None,
    status: VersionStatus | None = None,
) -> int:
    """Store a version (created, or replaced) whose endpoints are in ``state`` on target
    local-eu (region eu), served by ``upstreams`` when ready, or in ``states`` when given:
    what the API holds once the scheduler reported. Its revision."""
    if states is None:
        states = endpoint_states(names, version, upstreams, state=state, endpoints=endpoints)
    if status is None:
        status = VersionStatus.STOPPED if state is WorkloadState.STOPPED else VersionStatus.READY
    record = Version(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        name=version,
        status=status,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[
            EndpointSpec(name=endpoint, wsgi="app:app")
            for endpoint in sorted({s.endpoint for s in states} | set(endpoints))
        ],
        targets=sorted({s.target for s in states} | {"local-eu"}),
        endpoint_states=states,
    )
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    key = version_key(names.owner, names.project, names.deployment, version)
    held = await versions.get(key)
    if held is None:
        return await versions.create(key, record)
    return await versions.update(key, record, held.revision)


async def record_endpoint(js: JetStreamContext, names: Names, state: EndpointState) -> int:
    """Fold one endpoint state into its version's record (made ready if absent), as the API
    does with a scheduler's report; the write's revision."""
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    key = version_key(names.owner, names.project, names.deployment, state.version)
    held = await versions.get(key)
    kept = [] if held is None else held.value.endpoint_states
    place = (state.endpoint, state.target)
    states = [s for s in kept if (s.endpoint, s.target) != place] + [state]
    return await record_version(
        js, names, state.version, [], states=states, status=VersionStatus.READY
    )


async def record_region(js: JetStreamContext, region: str, *, drained: bool) -> int:
    """Drain (or undrain) ``region`` in the record, as the API's ``PUT /v1/regions``."""
    regions = await ResourceStore.open(js, REGIONS_BUCKET, Region)
    key = region_key(region)
    held = await regions.get(key)
    value = Region(name=region, drained=drained)
    if held is None:
        return await regions.create(key, value)
    return await regions.update(key, value, held.revision)


async def record_alias(js: JetStreamContext, names: Names, alias: str, version: str) -> int:
    """Point ``alias`` at ``version`` in the record (created, or moved); its revision."""
    aliases = await ResourceStore.open(js, ALIASES_BUCKET, Alias)
    key = alias_key(names.owner, names.project, names.deployment, alias)
    value = Alias(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        name=alias,
        target=AliasTarget(version=version),
    )
    held = await aliases.get(key)
    if held is None:
        return await aliases.create(key, value)
    return await aliases.update(key, value, held.revision)


class RouterProcess:
    """``python -m dockyard_router`` with the test's settings, in a session of its own."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dockyard_router"],
                env={**os.environ, "DOCKYARD_ROUTER_PORT": str(self.port), **env},
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=stop_with_parent,  # gone with the test run, whatever happens
            )

    def log(self) -> str:
        """What the router logged so far."""
        return self.log_path.read_text()

    async def until_serving(self, within_s: float = 30.0) -> None:
        """Until /healthz answers (the port is open, the tables loaded or given up on)."""
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, f"no router within {within_s} s:\n{self.log()}"
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL what is left (the parent and its workers)."""
        workers = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


@contextmanager
def start_router(env: dict[str, str], log_path: Path) -> Iterator[RouterProcess]:
    """A router process for the block (stopped after it)."""
    router = RouterProcess(env, log_path)
    try:
        yield router
    finally:
        router.stop()


async def raw_exchange(port: int, *pieces: bytes, pause_s: float = 0.0) -> bytes:
    """Send ``pieces`` on one new connection (``pause_s`` apart), then read until the router
    closes it (at most 10 s); everything it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, piece in enumerate(pieces):
            if index and pause_s:
                await asyncio.sleep(pause_s)
            writer.write(piece)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
