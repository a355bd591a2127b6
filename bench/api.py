"""Benchmark of the API (issue 3): submissions per second, and write → event latency.

One run against real servers: a nats-server with JetStream on a free port and ONE API
process (``python -m dockyard_api``); no builder or scheduler, so the CPU is the API's.
Set-up goes through the API as a user's CI would: owner, deployer token, project, target,
deployment, one small code blob. Then two phases:

1. **Throughput.** ``--concurrency`` clients with keep-alive POST versions for
   ``--duration`` seconds. ``submit_per_s`` counts the ``201`` answers (the version is
   stored in JetStream KV; its ``version.created`` event goes out through the API's relay).
   The run then waits until every accepted version's event has reached the NATS
   subscriber and says how long the relay lagged behind the writes.
2. **Latency.** ``--latency-writes`` POSTs paced at ``--latency-rate`` per second (at most
   ``--latency-concurrency`` in flight), each event matched by version name on two paths:
   a core NATS subscription to the event subject, and an SSE client of ``GET /v1/events``.
   Event latency is measured from just before the POST is sent to the event's arrival;
   the same arrival minus the moment the ``201`` was read is reported too (negative when
   the event overtakes the answer).

Readable lines first, targets beside the figures; the last line is one JSON object.
A benchmark measures: it never fails because a target is missed.

Run: ``.venv/bin/python bench/api.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from dockyard_common.runtime.processes import stop_with_parent
from dockyard_platform.servers import ServerProcess, free_port, start_nats

TARGET_SUBMIT_PER_S = 200.0
TARGET_EVENT_P99_MS = 20.0

OWNER = "bench"
PROJECT = "api"
DEPLOYMENT = "submit"
TARGET = "local-eu"
EVENT_TYPE = "version.created"

CODE = {
    "app.py": (
        b"def app(environ, start_response):\n"
        b"    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        b"    return [b'ok']\n"
    )
}
ENDPOINTS = [{"name": "predict", "wsgi": "app:app"}]
GIT_CODE = {"git": {"url": "https://git.example.com/bench/app.git", "ref": "main"}}


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile of ``values`` (linear between ranks); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max of durations in seconds, as milliseconds rounded to 0.01."""
    values = [v * 1000.0 for v in values_s]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50": rounded(percentile(values, 50)),
        "p90": rounded(percentile(values, 90)),
        "p99": rounded(percentile(values, 99)),
        "max": rounded(max(values) if values else None),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from ``/proc``; 0.0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the ")" that closes the command name; utime and stime are 14th and 15th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy so far (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    ticks = [int(value) for value in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds used by the API, nats-server, this client and everything else on the box.

    ``others`` is what processes outside this run used: on a shared machine it says how far
    the figures can be trusted.
    """

    pids: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["client"] = time.process_time()
        now["machine"] = machine_busy_seconds()
        return now

    def start(self) -> None:
        """Remember where every process's CPU time stands."""
        self.started = self._now()

    def used(self) -> dict[str, float]:
        """CPU seconds each process used since :meth:`start`, and ``others``."""
        used = {name: value - self.started[name] for name, value in self._now().items()}
        ours = sum(value for name, value in used.items() if name != "machine")
        used["others"] = max(0.0, used.pop("machine") - ours)
        return used


@dataclass
class Arrivals:
    """When each version's event arrived on one path (monotonic clock, first arrival kept)."""

    path: str
    times: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, name: str, at: float) -> None:
        """Note that the event of version ``name`` arrived at ``at``."""
        if name in self.times:
            self.duplicates += 1
        else:
            self.times[name] = at
        self.arrived.set()

    async def wait_for(self, names: set[str], timeout_s: float) -> bool:
        """Wait until every name has arrived or ``timeout_s`` passes; whether all arrived."""
        deadline = time.perf_counter() + timeout_s
        while not names <= self.times.keys():
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)
        return True


@dataclass(frozen=True)
class Submission:
    """One POST of a version: when it was sent and answered, and what came back."""

    sent: float
    answered: float
    status: int
    name: str | None
    error: str | None = None
    detail: str | None = None


# --- the platform ----------------------------------------------------------------------------


@dataclass
class Platform:
    """The servers this run started; :meth:`stop` stops them all, in reverse order."""

    work_dir: Path
    nats: ServerProcess | None = None
    api: subprocess.Popen[bytes] | None = None
    api_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def api_log(self) -> Path:
        """Where the API process writes its output."""
        return self.work_dir / "logs" / "api.log"

    def start(self) -> None:
        """Start nats-server and one API process; return once the API is ready."""
        self.nats = start_nats(self.work_dir)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env.update(
            {
                "DOCKYARD_NATS_URL": self.nats.url,
                "DOCKYARD_API_HOST": "127.0.0.1",
                "DOCKYARD_API_PORT": str(port),
                "DOCKYARD_ADMIN_TOKEN": self.admin_token,
                "DOCKYARD_DATA_DIR": str(self.work_dir / "data"),
                "DOCKYARD_LOG_LEVEL": "warning",
            }
        )
        self.api_log.parent.mkdir(parents=True, exist_ok=True)
        with self.api_log.open("ab") as log:
            self.api = subprocess.Popen(
                [sys.executable, "-m", "dockyard_api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=stop_with_parent,
                start_new_session=True,
            )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for ``/readyz`` to answer 200; RuntimeError with the API's log if it never does."""
        assert self.api is not None
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.api.poll() is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.api_url}/readyz") as response:
                        if response.status == 200:
                            return
                        last = f"{response.status} {await response.text()}"
                await asyncio.sleep(0.1)
        tail = self.api_log.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"the API at {self.api_url} was not ready within {timeout_s} s (last: {last}; "
            f"exit code {self.api.poll()}); its log ends:\n{tail}"
        )

    def stop(self) -> None:
        """Stop the API (SIGTERM, then SIGKILL) and nats-server; safe to call twice."""
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            try:
                self.api.wait(10)
            except subprocess.TimeoutExpired:
                self.api.kill()
                self.api.wait()
        if self.nats is not None:
            self.nats.stop()


def code_archive() -> bytes:
    """A small tar.gz holding a WSGI app, as a user's code upload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in CODE.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


async def expect(response: aiohttp.ClientResponse, *statuses: int) -> dict[str, Any]:
    """The JSON body of ``response``; RuntimeError naming the call if its status is not wanted."""
    body = await response.text()
    if response.status not in statuses:
        raise RuntimeError(
            f"{response.method} {response.url.path} answered {response.status}: {body[:500]}"
        )
    parsed: dict[str, Any] = json.loads(body) if body else {}
    return parsed


@dataclass
class VersionBodies:
    """The JSON bodies of version submissions, serialised once (or once each when named).

    Without a name the API names each version ``YYYYMMDD.N`` from its day counter, as for
    a user who gives none; ``named`` gives unique names instead, a diagnostic that skips it.
    """

    code: dict[str, Any]
    named: bool = False
    run: str = field(default_factory=lambda: secrets.token_hex(3))
    sent: int = 0

    def __post_init__(self) -> None:
        self._unnamed = json.dumps({"code": self.code, "endpoints": ENDPOINTS}).encode()

    def next(self) -> bytes:
        """The body of the next submission."""
        self.sent += 1
        if not self.named:
            return self._unnamed
        body = {"name": f"b{self.run}-{self.sent}", "code": self.code, "endpoints": ENDPOINTS}
        return json.dumps(body).encode()


async def set_up(api_url: str, admin_token: str) -> tuple[str, str]:
    """Create what a submission needs, as a user would; returns (deployer token, code digest)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    project = f"/v1/projects/{OWNER}/{PROJECT}"
    async with aiohttp.ClientSession(api_url, headers=admin) as api:
        async with api.post("/v1/owners", json={"name": OWNER}) as response:
            await expect(response, 201)
        async with api.post(f"/v1/owners/{OWNER}/tokens", json={"role": "deployer"}) as response:
            token = str((await expect(response, 201))["token"])
        target = {"region": "eu", "kind": "local", "address": "127.0.1.1"}
        async with api.put(f"/v1/targets/{TARGET}", json=target) as response:
            await expect(response, 200, 201)
    deployer = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(api_url, headers=deployer) as api:
        async with api.put(project, json={}) as response:
            await expect(response, 200, 201)
        deployment = f"{project}/deployments/{DEPLOYMENT}"
        async with api.put(deployment, json={"targets": [TARGET]}) as response:
            await expect(response, 200, 201)
        archive = code_archive()
        digest = f"sha256:{hashlib.sha256(archive).hexdigest()}"
        async with api.put(f"{project}/blobs/{digest}", data=archive) as response:
            await expect(response, 200, 201)
    return token, digest


# --- clients ---------------------------------------------------------------------------------


VERSIONS_PATH = f"/v1/projects/{OWNER}/{PROJECT}/deployments/{DEPLOYMENT}/versions"
JSON_HEADERS = {"Content-Type": "application/json"}


async def submit(session: aiohttp.ClientSession, bodies: VersionBodies) -> Submission:
    """POST one version; never raises (a transport error is reported in the result)."""
    body = bodies.next()
    sent = time.perf_counter()
    try:
        async with session.post(VERSIONS_PATH, data=body, headers=JSON_HEADERS) as response:
            payload = await response.read()
            answered = time.perf_counter()
            if response.status == 201:
                return Submission(sent, answered, 201, json.loads(payload)["name"])
            detail = payload[:300].decode(errors="replace")
            return Submission(sent, answered, response.status, None, detail=detail)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Submission(sent, time.perf_counter(), 0, None, type(exc).__name__)


async def follow_nats(nats_url: str, arrivals: Arrivals) -> NatsClient:
    """Subscribe (core NATS) to the deployment's ``version.created`` events."""
    connection = await nats.connect(nats_url, name="bench-subscriber")

    async def on_event(message: Msg) -> None:
        at = time.perf_counter()
        arrivals.record(json.loads(message.data)["data"]["name"], at)

    subject = f"dockyard.events.{OWNER}.{PROJECT}.{DEPLOYMENT}.{EVENT_TYPE}"
    await connection.subscribe(subject, cb=on_event)
    await connection.flush()
    return connection


async def follow_sse(
    api_url: str, token: str, arrivals: Arrivals, connected: asyncio.Event
) -> None:
    """Read ``GET /v1/events`` until cancelled, noting each ``version.created`` frame."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    params = {"owner": OWNER, "types": EVENT_TYPE}
    async with (
        aiohttp.ClientSession(api_url, timeout=timeout, read_bufsize=2**20) as session,
        session.get("/v1/events", params=params, headers=headers) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"GET /v1/events answered {response.status}")
        data: bytes | None = None
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b":"):
                connected.set()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif not line and data is not None:
                at = time.perf_counter()
                arrivals.record(json.loads(data)["data"]["name"], at)
                data = None


def client_session(api_url: str, token: str, connections: int) -> aiohttp.ClientSession:
    """A keep-alive session for submissions with up to ``connections`` connections."""
    return aiohttp.ClientSession(
        api_url,
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    )


# --- phases ----------------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    """What the throughput phase measured."""

    submissions: list[Submission]
    elapsed_s: float
    cpu_s: dict[str, float]
    nats_drain_s: float
    nats_missing: int
    sse_missing: int
    events_per_s: float


async def throughput_phase(
    session: aiohttp.ClientSession,
    bodies: VersionBodies,
    concurrency: int,
    duration_s: float,
    nats_arrivals: Arrivals,
    sse_arrivals: Arrivals,
    meter: CpuMeter,
    event_timeout_s: float,
) -> ThroughputResult:
    """``concurrency`` clients POST back to back for ``duration_s``; then await every event."""
    submissions: list[Submission] = []
    started = time.perf_counter()
    deadline = started + duration_s

    async def client() -> None:
        while time.perf_counter() < deadline:
            submissions.append(await submit(session, bodies))

    meter.start()
    async with asyncio.TaskGroup() as clients:
        for _ in range(concurrency):
            clients.create_task(client())
    elapsed = time.perf_counter() - started
    cpu = meter.used()
    names = {s.name for s in submissions if s.name is not None}
    last_answer = max((s.answered for s in submissions), default=started)
    await nats_arrivals.wait_for(names, event_timeout_s)
    await sse_arrivals.wait_for(names, event_timeout_s)
    seen = [nats_arrivals.times[n] for n in names if n in nats_arrivals.times]
    last_event = max(seen, default=last_answer)
    return ThroughputResult(
        submissions=submissions,
        elapsed_s=elapsed,
        cpu_s=cpu,
        nats_drain_s=max(0.0, last_event - last_answer),
        nats_missing=len(names - nats_arrivals.times.keys()),
        sse_missing=len(names - sse_arrivals.times.keys()),
        events_per_s=len(seen) / (last_event - started) if seen else 0.0,
    )


@dataclass
class LatencyResult:
    """What the latency phase measured."""

    submissions: list[Submission]
    elapsed_s: float
    cpu_s: dict[str, float]
    from_send: dict[str, list[float]]
    from_answer: dict[str, list[float]]
    missing: dict[str, int]


async def latency_phase(
    session: aiohttp.ClientSession,
    bodies: VersionBodies,
    writes: int,
    rate_per_s: float,
    concurrency: int,
    paths: list[Arrivals],
    meter: CpuMeter,
    event_timeout_s: float,
) -> LatencyResult:
    """``writes`` POSTs paced at ``rate_per_s``; each event matched on every path by name."""
    submissions: list[Submission] = []
    in_flight = asyncio.Semaphore(concurrency)

    async def one() -> None:
        try:
            submissions.append(await submit(session, bodies))
        finally:
            in_flight.release()

    meter.start()
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for index in range(writes):
            delay = started + index / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.create_task(one())
    elapsed = time.perf_counter() - started
    accepted = [s for s in submissions if s.name is not None]
    names = {s.name for s in accepted if s.name is not None}
    for arrivals in paths:
        await arrivals.wait_for(names, event_timeout_s)
    cpu = meter.used()
    from_send: dict[str, list[float]] = {}
    from_answer: dict[str, list[float]] = {}
    missing: dict[str, int] = {}
    for arrivals in paths:
        times = arrivals.times
        matched = [s for s in accepted if s.name in times]
        from_send[arrivals.path] = [times[str(s.name)] - s.sent for s in matched]
        from_answer[arrivals.path] = [times[str(s.name)] - s.answered for s in matched]
        missing[arrivals.path] = len(accepted) - len(matched)
    return LatencyResult(submissions, elapsed, cpu, from_send, from_answer, missing)


# --- reporting -------------------------------------------------------------------------------


def statuses(submissions: list[Submission]) -> dict[str, int]:
    """Answers by status code (or transport error name), e.g. ``{"201": 2000, "409": 3}``."""
    return dict(
        sorted(Counter(s.error or str(s.status) for s in submissions).items(), key=lambda i: i[0])
    )


def first_refusals(submissions: list[Submission]) -> dict[str, str]:
    """The first answer body seen for each status other than 201 (what went wrong)."""
    seen: dict[str, str] = {}
    for s in submissions:
        if s.status != 201 and s.detail is not None:
            seen.setdefault(str(s.status), s.detail)
    return seen


def report(
    args: argparse.Namespace, throughput: ThroughputResult, latency: LatencyResult
) -> dict[str, Any]:
    """Print the readable summary; return the JSON line's fields."""
    accepted = [s for s in throughput.submissions if s.status == 201]
    submit_per_s = len(accepted) / throughput.elapsed_s
    under_load = summary_ms([s.answered - s.sent for s in accepted])
    api_ms_per = 1000 * throughput.cpu_s["api"] / max(1, len(accepted))
    nats_ms_per = 1000 * throughput.cpu_s["nats"] / max(1, len(accepted))
    post = summary_ms([s.answered - s.sent for s in latency.submissions if s.status == 201])
    nats_event = summary_ms(latency.from_send["nats"])
    sse_event = summary_ms(latency.from_send["sse"])
    nats_after = summary_ms(latency.from_answer["nats"])
    sse_after = summary_ms(latency.from_answer["sse"])
    latency_rate = len(latency.submissions) / latency.elapsed_s

    def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
        if value is None:
            return "no data"
        met = value >= target if higher_is_better else value <= target
        return "meets" if met else "MISSES"

    cpus = os.cpu_count()
    code = "a git URL" if args.code == "git" else "an uploaded blob"
    naming = "unique names given" if args.named else "no name (the API names YYYYMMDD.N)"
    print(f"environment: {cpus} CPUs, Python {platform.python_version()}, {platform.platform()}")
    print(
        f"set-up: one API process, nats-server; versions with code from {code}, {naming}; "
        f"listeners: a core NATS subscriber and one SSE client, connected throughout"
    )
    print(
        f"throughput: {args.concurrency} clients for {throughput.elapsed_s:.1f} s: "
        f"{len(accepted)} accepted, answers {statuses(throughput.submissions)}"
    )
    for status, detail in first_refusals(throughput.submissions + latency.submissions).items():
        print(f"  first {status} answer: {detail}")
    print(
        f"  submit_per_s      {submit_per_s:8.1f}   target >= {TARGET_SUBMIT_PER_S:.0f}   "
        f"{verdict(submit_per_s, TARGET_SUBMIT_PER_S, True)}"
    )
    print(
        f"  POST latency under load: p50 {under_load['p50']} ms, p99 {under_load['p99']} ms; "
        f"CPU per accepted submission: API {api_ms_per:.2f} ms, nats-server "
        f"{nats_ms_per:.2f} ms, this client "
        f"{1000 * throughput.cpu_s['client'] / max(1, len(accepted)):.2f} ms"
    )
    print(
        f"  CPU used meanwhile by processes outside this run: {throughput.cpu_s['others']:.1f} s "
        f"of {throughput.elapsed_s * (cpus or 1):.0f} s"
    )
    print(
        f"  events: {throughput.events_per_s:.1f}/s reached NATS; the last arrived "
        f"{throughput.nats_drain_s:.2f} s after the last 201; never seen within "
        f"{args.event_timeout:.0f} s: NATS {throughput.nats_missing}, SSE {throughput.sse_missing}"
    )
    print(
        f"latency: {len(latency.submissions)} writes at {latency_rate:.1f}/s "
        f"(asked {args.latency_rate:g}/s, <= {args.latency_concurrency} in flight), "
        f"answers {statuses(latency.submissions)}"
    )
    print(f"  POST → 201            p50 {post['p50']} ms, p90 {post['p90']}, p99 {post['p99']}")
    for path, event, after in (("nats", nats_event, nats_after), ("sse", sse_event, sse_after)):
        print(
            f"  POST sent → {path:4} event p50 {event['p50']} ms, p90 {event['p90']}, "
            f"p99 {event['p99']:>6} (target p99 <= {TARGET_EVENT_P99_MS:.0f}: "
            f"{verdict(event['p99'], TARGET_EVENT_P99_MS, False)}), max {event['max']}, "
            f"missing {latency.missing[path]}"
        )
        print(f"  201 read  → {path:4} event p50 {after['p50']} ms, p99 {after['p99']}")
    print(
        f"  CPU used meanwhile by processes outside this run: {latency.cpu_s['others']:.1f} s "
        f"of {latency.elapsed_s * (cpus or 1):.0f} s"
    )
    return {
        "submit_per_s": round(submit_per_s, 1),
        "nats_event_p50_ms": nats_event["p50"],
        "nats_event_p90_ms": nats_event["p90"],
        "nats_event_p99_ms": nats_event["p99"],
        "nats_event_max_ms": nats_event["max"],
        "sse_event_p50_ms": sse_event["p50"],
        "sse_event_p90_ms": sse_event["p90"],
        "sse_event_p99_ms": sse_event["p99"],
        "sse_event_max_ms": sse_event["max"],
        "nats_after_201_p50_ms": nats_after["p50"],
        "nats_after_201_p99_ms": nats_after["p99"],
        "sse_after_201_p50_ms": sse_after["p50"],
        "sse_after_201_p99_ms": sse_after["p99"],
        "nats_events_missing": latency.missing["nats"],
        "sse_events_missing": latency.missing["sse"],
        "latency_writes": len(latency.submissions),
        "latency_rate_per_s": round(latency_rate, 1),
        "latency_concurrency": args.latency_concurrency,
        "latency_post_p50_ms": post["p50"],
        "latency_post_p99_ms": post["p99"],
        "latency_answers": statuses(latency.submissions),
        "submit_concurrency": args.concurrency,
        "submit_duration_s": round(throughput.elapsed_s, 2),
        "submit_accepted": len(accepted),
        "submit_answers": statuses(throughput.submissions),
        "submit_post_p50_ms": under_load["p50"],
        "submit_post_p99_ms": under_load["p99"],
        "submit_events_per_s": round(throughput.events_per_s, 1),
        "submit_event_drain_s": round(throughput.nats_drain_s, 3),
        "submit_events_missing_nats": throughput.nats_missing,
        "submit_events_missing_sse": throughput.sse_missing,
        "api_cpu_ms_per_submit": round(api_ms_per, 3),
        "nats_cpu_ms_per_submit": round(nats_ms_per, 3),
        "code": args.code,
        "named": args.named,
        "cpu_count": cpus,
        "others_cpu_s_submit": round(throughput.cpu_s["others"], 2),
        "others_cpu_s_latency": round(latency.cpu_s["others"], 2),
        "target_submit_per_s": TARGET_SUBMIT_PER_S,
        "target_event_p99_ms": TARGET_EVENT_P99_MS,
    }


# --- the run ---------------------------------------------------------------------------------


async def benchmark(platform_: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Set up through the API, listen on both paths, run both phases; the JSON fields."""
    await platform_.wait_ready()
    token, digest = await set_up(platform_.api_url, platform_.admin_token)
    code = {"blob": digest} if args.code == "blob" else GIT_CODE
    bodies = VersionBodies(code, named=args.named)
    assert platform_.nats is not None and platform_.api is not None
    nats_arrivals, sse_arrivals = Arrivals("nats"), Arrivals("sse")
    subscriber = await follow_nats(platform_.nats.url, nats_arrivals)
    connected = asyncio.Event()
    sse = asyncio.create_task(follow_sse(platform_.api_url, token, sse_arrivals, connected))
    meter = CpuMeter({"api": platform_.api.pid, "nats": platform_.nats.process.pid})
    try:
        await asyncio.wait_for(connected.wait(), 10)
        connections = max(args.concurrency, args.latency_concurrency)
        async with client_session(platform_.api_url, token, connections) as session:
            # Warm up: first requests pay for lazy imports, consumers and connection set-up.
            warm = [await submit(session, bodies) for _ in range(args.warmup)]
            warm_names = {s.name for s in warm if s.name is not None}
            await nats_arrivals.wait_for(warm_names, args.event_timeout)
            await sse_arrivals.wait_for(warm_names, args.event_timeout)
            throughput = await throughput_phase(
                session,
                bodies,
                args.concurrency,
                args.duration,
                nats_arrivals,
                sse_arrivals,
                meter,
                args.event_timeout,
            )
            latency = await latency_phase(
                session,
                bodies,
                args.latency_writes,
                args.latency_rate,
                args.latency_concurrency,
                [nats_arrivals, sse_arrivals],
                meter,
                args.event_timeout,
            )
    finally:
        sse.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await sse
        await subscriber.close()
    fields = report(args, throughput, latency)
    fields["duplicate_events"] = {"nats": nats_arrivals.duplicates, "sse": sse_arrivals.duplicates}
    return fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16, help="throughput clients")
    parser.add_argument("--duration", type=float, default=10.0, help="throughput seconds")
    parser.add_argument("--warmup", type=int, default=20, help="writes before measuring")
    parser.add_argument("--latency-writes", type=int, default=600)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="writes per second")
    parser.add_argument("--latency-concurrency", type=int, default=4, help="max in flight")
    parser.add_argument("--event-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument(
        "--code",
        choices=["blob", "git"],
        default="blob",
        help="submit code as the uploaded blob (default) or a git URL: a diagnostic, git "
        "skips the API's fetch and check of the code archive",
    )
    parser.add_argument(
        "--named",
        action="store_true",
        help="give each version a unique name: a diagnostic that skips the API's day counter",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so that the clean-up below runs for it as for Ctrl-C."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Start the servers, run the benchmark, stop everything; print the JSON line last."""
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="dockyard-bench-api-"))
    platform_ = Platform(work_dir)
    try:
        with sigterm_as_exit():
            platform_.start()
            fields = asyncio.run(benchmark(platform_, args))
    except KeyboardInterrupt:
        print("interrupted: stopping the servers; nothing measured", file=sys.stderr)
        return 130
    finally:
        platform_.stop()
        if args.keep:
            print(f"work dir kept: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps(fields), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
