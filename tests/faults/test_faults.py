"""kill -9 of each process of a running platform, under load: nothing else notices.

One platform (``dockyard up`` as a subprocess, its own NATS and Redis, free ports, a temp
data directory) serves a ready version on two targets. For each process in turn: reads go
through the router and versions are submitted to the API; the process gets SIGKILL; the
suite measures until the service works again, then checks that the router answered every
read, that every acknowledged submission is stored exactly once, that the restart was
announced on the event stream, and that the endpoint replicas running are exactly those the
record wants (none orphaned, none doubled, after a scheduler kill too). Each fault is
bounded in time; the measurements go to ``DOCKYARD_FAULTS_RESULTS`` (JSON) when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
import nats.errors
import pytest

from tests.faults.load import ReadLoad, SubmissionLoad
from tests.faults.processes import argv_of, replica_census, service_pid
from tests.faults.results import FaultResult, SuiteResults
from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import WSGI_APP, deploy_ready, put_deployment, upload_blob

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAULTS = ("builder", "webhooks", "scheduler", "api", "router", "redis", "nats")
"""In this order: the state of record's own server last."""

RESULTS_ENV = "DOCKYARD_FAULTS_RESULTS"
BEFORE_S = 1.0
"""Load before the kill, to see the platform serve it undisturbed."""
AFTER_S = 1.0
"""Load after the service is back."""
RECOVER_WITHIN_S = 30.0
SETTLE_WITHIN_S = 30.0
BUILT_WITHIN_S = 10.0
TARGET_ADDRESSES = {"local-eu": "127.0.1.1", "local-us": "127.0.2.1"}


@dataclass
class World:
    """The platform under fault and what every fault test shares."""

    platform: RunningPlatform
    api: httpx.AsyncClient
    served: Names
    """The deployment read through the router (version v1 on both targets)."""
    submitted: Names
    """The deployment versions are submitted to during faults (local-eu only)."""
    code_blob: str
    results: list[FaultResult] = field(default_factory=list)

    @property
    def launcher(self) -> int:
        return self.platform.process.pid

    def versions_path(self, names: Names) -> str:
        return f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/versions"

    @property
    def redis_port(self) -> int:
        """The port of the platform's redis-server (it shows it in its process title)."""
        pid = service_pid(self.launcher, "redis")
        assert pid is not None, "the platform runs no redis-server"
        argv = argv_of(pid)
        if "--port" in argv:
            return int(argv[argv.index("--port") + 1])
        return int(argv[0].split()[-1].rpartition(":")[2])

    def nats_url(self) -> str:
        pid = service_pid(self.launcher, "nats")
        assert pid is not None, "the platform runs no nats-server"
        argv = argv_of(pid)
        return f"nats://127.0.0.1:{argv[argv.index('-p') + 1]}"


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The platform, a served version, and the results written when the module ends."""
    data_dir = tmp_path_factory.mktemp("faults") / "data"
    platform = start_platform_process(
        data_dir,
        {
            # Submissions pile up versions: stop all but the newest soon, not in an hour.
            "DOCKYARD_RETENTION_GRACE_S": "0",
            "DOCKYARD_RETENTION_SWEEP_EVERY_S": "1",
            "DOCKYARD_LOG_LEVEL": "info",
        },
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        async with admin_client(platform) as api:
            served = Names(owner="faults", project="demo", deployment="web")
            submitted = Names(owner="faults", project="demo", deployment="sub")
            await put_deployment(api, served, ["local-eu", "local-us"])
            await deploy_ready(api, served, "v1")
            await put_deployment(api, submitted, ["local-eu"])
            code = await upload_blob(api, submitted, tar_gz({"app.py": WSGI_APP}))
            world = World(platform, api, served, submitted, code)
            yield world
    finally:
        code = platform.stop(60)
        _write(data_dir / "logs" / "launcher.log", "".join(platform.output))
        results = os.environ.get(RESULTS_ENV)
        if results and "world" in locals():
            suite = SuiteResults(started=started, cpus=os.cpu_count() or 0, faults=world.results)
            _write(Path(results), suite.model_dump_json(indent=2) + "\n")
    assert code == 0, "".join(platform.output)[-5000:]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_killed_process_is_back_by_itself_and_nothing_else_noticed(
    world: World, fault: str
) -> None:
    result, census = await inflict(world, fault)
    world.results.append(result)
    logs = world.platform.data_dir / "logs"
    assert result.recover_s is not None, (
        f"{fault} did not work again within {RECOVER_WITHIN_S} s; launcher said:\n"
        + "".join(world.platform.output)[-3000:]
        + f"\n{fault}.log ends:\n{_tail(logs / f'{fault}.log')}"
    )
    assert result.reads_failed == 0, f"reads through the router failed: {result.read_errors}"
    assert result.lost == 0 and result.duplicated == 0, result
    assert result.acknowledged > 0, "no submission was acknowledged: the load proved nothing"
    assert result.event_s is not None, f"no platform.service.restarted event for {fault}"
    assert result.replicas_running == result.replicas_wanted, (
        f"replicas running differ from those the record wants: {census}"
    )
    assert world.platform.process.poll() is None, "the platform stopped"


async def inflict(world: World, fault: str) -> tuple[FaultResult, str]:
    """Kill ``fault`` under load; measure its recovery and what the load saw."""
    killed = service_pid(world.launcher, fault)
    assert killed is not None, f"the platform runs no {fault} process"
    reads = ReadLoad(f"{world.platform.router_url}/faults/demo/web/v1/predict/ping")
    submissions = SubmissionLoad(
        world.api, world.versions_path(world.submitted), world.code_blob, prefix=fault
    )
    stop = asyncio.Event()
    started = time.monotonic()
    loads = asyncio.gather(reads.run(stop), submissions.run(stop))
    announced: asyncio.Task[float | None] | None = None
    try:
        await asyncio.sleep(BEFORE_S)
        log_offset = _size(world.platform.data_dir / "logs" / f"{fault}.log")
        killed_at = time.monotonic()
        os.kill(killed, signal.SIGKILL)
        announced = asyncio.create_task(_restart_announced(world, fault, killed, killed_at))
        restarted_s = await _time_until(
            lambda: _restarted(world, fault, killed), killed_at, RECOVER_WITHIN_S
        )
        probe = _probes(world, fault, log_offset)
        recover_s = await _time_until(
            lambda: _back(world, fault, killed, probe), killed_at, RECOVER_WITHIN_S
        )
        await asyncio.sleep(AFTER_S)
        event_s = await announced
    finally:
        stop.set()
        await loads
        if announced is not None and not announced.done():
            announced.cancel()
    window_s = time.monotonic() - started
    stored, built = await _stored_submissions(world, submissions)
    wanted, running, census = await _settled_replicas(world)
    acknowledged = set(submissions.acknowledged)
    markers = {s.marker for s in submissions.submissions}
    return (
        FaultResult(
            fault=fault,
            window_s=round(window_s, 2),
            reads=reads.sent,
            read_rate=round(reads.sent / window_s, 1),
            reads_failed=reads.failed,
            reads_retried=reads.retried,
            read_errors=dict(reads.errors),
            slowest_read_s=round(reads.slowest_s, 3),
            submissions=len(submissions.submissions),
            acknowledged=len(acknowledged),
            lost=sum(1 for m in acknowledged if stored[m] == 0),
            duplicated=sum(1 for m in markers if stored[m] > 1),
            unacknowledged_stored=sum(1 for m in markers - acknowledged if stored[m] == 1),
            built=built,
            restarted_s=None if restarted_s is None else round(restarted_s, 2),
            recover_s=None if recover_s is None else round(recover_s, 2),
            event_s=None if event_s is None else round(event_s, 2),
            replicas_wanted=wanted,
            replicas_running=running,
        ),
        census,
    )


def _probes(world: World, fault: str, log_offset: int) -> Callable[[], Awaitable[bool]]:
    """Whether the restarted service works: it answers, or it says it consumes again."""
    log = world.platform.data_dir / "logs" / f"{fault}.log"

    async def api_ready() -> bool:
        async with httpx.AsyncClient(base_url=world.platform.api_url, timeout=2) as client:
            return (await client.get("/readyz")).status_code == 200

    async def router_serves() -> bool:
        # A fresh connection: only a new router process accepts new connections.
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"{world.platform.router_url}/healthz") as response,
        ):
            return response.status == 200

    async def consumes_again() -> bool:
        return "service.started" in log.read_bytes()[log_offset:].decode(errors="replace")

    async def redis_answers() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", world.redis_port)
        writer.write(b"PING\r\n")
        answer = await reader.readline()
        writer.close()
        return answer == b"+PONG\r\n"

    return {
        "api": api_ready,
        "nats": api_ready,  # the API works again once its NATS connection is back
        "router": router_serves,
        "redis": redis_answers,
    }.get(fault, consumes_again)


async def _restarted(world: World, fault: str, killed: int) -> bool:
    """Whether the launcher runs a new process of the service."""
    return service_pid(world.launcher, fault) not in (None, killed)


async def _back(
    world: World, fault: str, killed: int, probe: Callable[[], Awaitable[bool]]
) -> bool:
    if not await _restarted(world, fault, killed):
        return False
    try:
        return await probe()
    except (OSError, httpx.TransportError, aiohttp.ClientError, ValueError, IndexError):
        return False


async def _time_until(
    check: Callable[[], Awaitable[bool]], since: float, within_s: float
) -> float | None:
    """Seconds from ``since`` until ``check()`` is true, polled; None past the bound."""
    while time.monotonic() - since < within_s:
        if await check():
            return time.monotonic() - since
        await asyncio.sleep(0.02)
    return None


async def _restart_announced(
    world: World, fault: str, killed: int, killed_at: float
) -> float | None:
    """Seconds from the kill until the stream holds the restart's event (None: not within
    the bound). Looked for from the kill on, through the NATS outage when NATS was killed."""
    while time.monotonic() - killed_at < RECOVER_WITHIN_S:
        try:
            if await _event_stored(world.nats_url(), fault, killed):
                return time.monotonic() - killed_at
        except (OSError, nats.errors.Error, AssertionError):
            pass  # NATS itself is away (or not yet back under the launcher)
        await asyncio.sleep(0.1)
    return None


async def _event_stored(nats_url: str, fault: str, killed: int) -> bool:
    nc = await nats.connect(nats_url, connect_timeout=1, allow_reconnect=False)
    try:
        subscription = await nc.jetstream().subscribe(
            "dockyard.platform.service.restarted", ordered_consumer=True
        )
        try:
            while True:
                message = await subscription.next_msg(timeout=0.2)
                data = json.loads(message.data)["data"]
                if data["service"] == fault and data["exited_pid"] == killed:
                    return True
        except (TimeoutError, nats.errors.TimeoutError):
            return False
    finally:
        await nc.close()


async def _versions(world: World, names: Names) -> list[dict[str, Any]]:
    response = await world.api.get(world.versions_path(names), params={"limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _stored_submissions(
    world: World, submissions: SubmissionLoad
) -> tuple[Counter[str], int]:
    """How many times each submission is stored, and how many acknowledged ones got built
    within a bounded wait."""
    acknowledged = set(submissions.acknowledged)
    deadline = time.monotonic() + BUILT_WITHIN_S
    while True:
        versions = await _versions(world, world.submitted)
        stored = Counter(str(v["env"].get("SUBMISSION")) for v in versions)
        built = sum(
            1
            for v in versions
            if v["env"].get("SUBMISSION") in acknowledged
            and v["status"] not in ("pending", "building")
        )
        if built == len(acknowledged) or time.monotonic() > deadline:
            return stored, built
        await asyncio.sleep(0.25)


async def _settled_replicas(world: World) -> tuple[int, int, str]:
    """Wait until the replicas running are those the record wants; (wanted, running, a
    description of the difference) when it holds or the bound passes."""
    deadline = time.monotonic() + SETTLE_WITHIN_S
    while True:
        wanted: Counter[tuple[str, str]] = Counter()
        for names in (world.served, world.submitted):
            for version in await _versions(world, names):
                if version["status"] != "ready":
                    continue
                for endpoint in version["endpoints"]:
                    prefix = f"/{names.owner}/{names.project}/{names.deployment}"
                    prefix += f"/{version['name']}/{endpoint['name']}"
                    for target in version["targets"]:
                        wanted[(prefix, TARGET_ADDRESSES[target])] += 1
        running = replica_census(world.platform.data_dir)
        if running == wanted or time.monotonic() > deadline:
            orphaned = running - wanted
            missing = wanted - running
            described = f"orphaned or doubled: {dict(orphaned)}; missing: {dict(missing)}"
            return sum(wanted.values()), sum(running.values()), described
        await asyncio.sleep(0.25)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
