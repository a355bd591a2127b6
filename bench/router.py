"""Benchmark of the router (issue 6): direct vs proxied throughput, and alias switch propagation.

One run against the whole embedded platform, started as ``make run`` starts it
(``python -m dockyard_platform``: its own nats-server, redis-server, API, builder, scheduler
and a router whose ``DOCKYARD_ROUTER_WORKERS`` worker processes share the port, 2 by
default). Set-up
goes through the API with the admin token: owner, project, deployment on ``local-eu``, two
code blobs whose WSGI app answers a tiny fixed body naming its version, versions ``v1`` and
``v2``; once both are ready, the upstream of ``v1`` is read from its endpoint states. Then
two phases:

1. **Throughput.** ``--concurrency`` keep-alive clients GET, back to back for ``--duration``
   seconds each, first the upstream directly, then the same endpoint through the router
   (``/<owner>/<project>/<deployment>/v1/predict/``): req/s, p50, p99; then one client of
   each. The load generator runs on the same machine and shares its CPUs with the platform,
   so the phase runs once per generator (``--clients``): ``wrk`` (C; 17-23 µs of CPU per
   request here) when it is installed, the headline, then an aiohttp event loop in this
   process (62-100 µs per request, as much as the router's own). Every answer must be a 200
   with the version's body.
2. **Switch propagation.** ``--switches`` alias PUTs alternate ``production`` between ``v1``
   and ``v2``. Each is measured from just before the PUT is sent until a GET of
   ``/<owner>/<project>/<deployment>/production/predict/`` through the router answers with
   the new version (polled every ``--poll-ms``, at most ``--switch-timeout`` seconds), both
   sent by a minimal keep-alive HTTP/1.1 client of this process (:class:`Connection`). The
   PUT's own duration and the API's ``X-Dockyard-Switch-Ms`` (its wait for every live router
   process) are reported too. Then ``--observed-switches`` more, with a NATS subscriber in
   this process following the alias writes and the router heartbeats, split each switch
   into the API's part and the routers'; that subscriber costs this process about 0.6 ms
   of CPU per switch on the CPUs the platform uses, so the headline switches run without
   it (in four interleaved pairs of 300 switches its effect on the latency was within the
   noise: p50 4.8-6.9 ms without, 5.6-6.5 with); the ``switch_api_to_write_*``,
   ``switch_write_to_applied_*`` and ``switch_applied_to_answer_*`` fields come from that
   second set. Non-200 answers (including ``202``: a router lagged) and timeouts count as
   ``switch_errors`` (``observed_switch_errors`` in the second set). The CPU each role of
   the platform spent per headline switch is reported too.

Readable lines first, targets beside the figures; the last line is one JSON object.
A benchmark measures: it never fails because a target is missed.

Run: ``.venv/bin/python bench/router.py`` (``--help`` for the knobs; ``apt-get install wrk``
for the headline load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from dockyard_common.subjects import ALIASES_BUCKET, ROUTER_HEARTBEAT_SUBJECT

try:
    from bench.api import cpu_seconds, expect, machine_busy_seconds, sigterm_as_exit, summary_ms
    from bench.common import ROUTER_WORKERS, Platform
except ModuleNotFoundError:  # run as ``python bench/router.py``: bench/ is on sys.path
    from api import (  # type: ignore[no-redef,import-not-found]
        cpu_seconds,
        expect,
        machine_busy_seconds,
        sigterm_as_exit,
        summary_ms,
    )
    from common import ROUTER_WORKERS, Platform  # type: ignore[no-redef,import-not-found]

TARGET_RATIO = 0.5
TARGET_ADDED_P50_MS = 1.0
TARGET_SWITCH_P99_MS = 10.0

OWNER = "bench"
PROJECT = "demo"
DEPLOYMENT = "web"
TARGET = "local-eu"
ALIAS = "production"
VERSIONS = ("v1", "v2")
ENDPOINTS = [{"name": "predict", "wsgi": "app:app"}]
PROJECT_PATH = f"/v1/projects/{OWNER}/{PROJECT}"
DEPLOYMENT_PATH = f"{PROJECT_PATH}/deployments/{DEPLOYMENT}"
CLIENTS = {
    "wrk": "wrk (C, one thread)",
    "aiohttp": "aiohttp (this process, one event loop)",
}
"""The load generators phase 1 can use."""


def wsgi_app(version: str) -> bytes:
    """The source of a WSGI app whose fixed small body names ``version``."""
    return (
        f"BODY = b'bench {version}'\n\n\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
        "                              ('Content-Length', str(len(BODY)))])\n"
        "    return [BODY]\n"
    ).encode()


def body_of(version: str) -> bytes:
    """What the app of ``version`` answers."""
    return f"bench {version}".encode()


def code_archive(version: str) -> bytes:
    """A tar.gz holding the app of ``version``, as a user's code upload."""
    buffer = io.BytesIO()
    content = wsgi_app(version)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("app.py")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# --- the platform ----------------------------------------------------------------------------


async def wait_ready(api: aiohttp.ClientSession, version: str, timeout_s: float) -> dict[str, Any]:
    """Poll the version until its status is ``ready``; its body. RuntimeError if it fails."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with api.get(f"{DEPLOYMENT_PATH}/versions/{version}") as response:
            body = await expect(response, 200)
        if body.get("status") == "ready":
            return body
        if body.get("status") in {"failed", "stopped"}:
            break
        await asyncio.sleep(0.25)
    raise RuntimeError(
        f"version {version} not ready within {timeout_s:.0f} s: status {body.get('status')!r}, "
        f"error {body.get('error')!r}"
    )


def first_upstream(version: dict[str, Any]) -> str:
    """The first upstream of the version's first serving endpoint state."""
    for state in version.get("endpoint_states", []):
        if state.get("upstreams"):
            return str(state["upstreams"][0])
    raise RuntimeError(f"version {version.get('name')} is ready but names no upstream")


async def set_up(platform_: Platform, ready_timeout_s: float) -> str:
    """Create owner, project, deployment, both versions and the alias; the direct upstream."""
    admin = {"Authorization": f"Bearer {platform_.admin_token}"}
    async with aiohttp.ClientSession(platform_.api_url, headers=admin) as api:
        async with api.post("/v1/owners", json={"name": OWNER}) as response:
            await expect(response, 201)
        async with api.put(PROJECT_PATH, json={}) as response:
            await expect(response, 200, 201)
        async with api.put(DEPLOYMENT_PATH, json={"targets": [TARGET]}) as response:
            await expect(response, 200, 201)
        for version in VERSIONS:
            archive = code_archive(version)
            digest = f"sha256:{hashlib.sha256(archive).hexdigest()}"
            async with api.put(f"{PROJECT_PATH}/blobs/{digest}", data=archive) as response:
                await expect(response, 200, 201)
            body = {"name": version, "code": {"blob": digest}, "endpoints": ENDPOINTS}
            async with api.post(f"{DEPLOYMENT_PATH}/versions", json=body) as response:
                await expect(response, 201)
        ready = [await wait_ready(api, version, ready_timeout_s) for version in VERSIONS]
        async with api.put(f"{DEPLOYMENT_PATH}/aliases/{ALIAS}", json={"version": "v1"}) as r:
            await expect(r, 200, 201)
    return first_upstream(ready[0])


# --- CPU accounting --------------------------------------------------------------------------


ROLES = (("router", "dockyard_router"), ("upstream", "dockyard_runner"))
"""A role and what its processes' command lines hold; any other process is ``platform``."""
SWITCH_ROLES = (
    ("webhooks", "dockyard_api.webhooks"),
    ("api", "dockyard_api"),
    ("nats", "nats-server"),
    ("redis", "redis-server"),
    ("redis", "valkey-server"),  # where the Redis package is missing (dockyard_platform.servers)
    *ROLES,
)
"""Finer roles for the switch phase, whose work spreads over every service."""


def process_groups(root: int, roles: tuple[tuple[str, str], ...] = ROLES) -> dict[str, list[int]]:
    """The launcher's descendants by role (the first of ``roles`` whose mark is in the
    command line), the others as ``platform`` (``/proc``; empty elsewhere)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    groups: dict[str, list[int]] = {role: [] for role, _ in roles}
    groups["platform"] = [root]
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, command) in parents.items():
            if ppid == parent:
                frontier.append(pid)
                role = next((role for role, mark in roles if mark in command), "platform")
                groups[role].append(pid)
    return groups


@dataclass
class CpuUse:
    """CPU seconds each role used over one phase, and ``others``: processes outside the run
    (other work on a shared machine; when large, the figures are not to be trusted)."""

    groups: dict[str, list[int]]
    started: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {role: sum(cpu_seconds(p) for p in pids) for role, pids in self.groups.items()}
        times = os.times()  # the bench's own CPU and its finished children's (wrk)
        now["client"] = times.user + times.system + times.children_user + times.children_system
        now["machine"] = machine_busy_seconds()
        return now

    def client(self) -> float:
        """CPU seconds the load generator used over the phase."""
        return self.used.get("client", 0.0)

    def start(self) -> None:
        """Take the starting point."""
        self.started = self._now()

    def stop(self) -> None:
        """CPU seconds used since :meth:`start`, per role, and ``others``."""
        used = {role: value - self.started[role] for role, value in self._now().items()}
        ours = sum(value for role, value in used.items() if role != "machine")
        used["others"] = max(0.0, used.pop("machine") - ours)
        self.used = used


def nats_url_of(root: int) -> str | None:
    """The URL of the nats-server the launcher started (its ``-p`` port), if found."""
    for pid in (p for pids in process_groups(root).values() for p in pids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"nats-server") and b"-p" in argv:
            return f"nats://127.0.0.1:{argv[argv.index(b'-p') + 1].decode()}"
    return None


@dataclass
class Timeline:
    """When alias writes reached NATS and when router heartbeats reported each revision, seen
    by a core NATS subscriber: splits a switch into the API's part and the routers' part."""

    writes: list[float] = field(default_factory=list)
    beats: list[tuple[float, str, int]] = field(default_factory=list)
    """(when, router process, alias bucket revision it reports applied through)."""

    async def follow(self, url: str) -> NatsClient:
        """Subscribe to the alias bucket's writes and the router heartbeats."""
        nc = await nats.connect(url)

        async def on_write(_: Msg) -> None:
            self.writes.append(time.perf_counter())

        async def on_beat(message: Msg) -> None:
            beat = json.loads(message.data)
            self.beats.append((time.perf_counter(), beat["process"], beat["applied_through"]))

        await nc.subscribe(f"$KV.{ALIASES_BUCKET}.>", cb=on_write)
        await nc.subscribe(ROUTER_HEARTBEAT_SUBJECT, cb=on_beat)
        return nc

    def split(self, sent: float, answered: float, revision: int) -> tuple[float, float, float]:
        """(PUT sent → write stored, write → every router reported it, → PUT answered)."""
        written = next((at for at in self.writes if at >= sent), answered)
        applied: dict[str, float] = {}
        for at, process, held in self.beats:
            if at >= sent and held >= revision:
                applied.setdefault(process, at)
        last = max(applied.values(), default=written)
        return written - sent, max(0.0, last - written), max(0.0, answered - last)


# --- phases ----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one throughput run measured."""

    label: str
    ok: int
    """Requests answered 200 with the expected body."""
    latency_ms: dict[str, float | None]
    """p50/p90/p99/max of the good answers."""
    answers: Counter[str]
    elapsed_s: float
    client_cpu_s: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Good answers per second."""
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


async def load(
    label: str,
    url: str,
    expected: bytes | None,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    groups: dict[str, list[int]] | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive clients GET ``url`` back to back for ``duration_s``."""
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                sent = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        payload = await response.read()
                        took = time.perf_counter() - sent
                        good = response.status == 200 and (expected is None or payload == expected)
                        answer = "200" if good else f"{response.status} {payload[:60]!r}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    took, good, answer = 0.0, False, type(exc).__name__
                if record:
                    answers[answer] += 1
                    if good:
                        latencies.append(took)

        async def run(seconds: float, record: bool) -> float:
            started = time.perf_counter()
            async with asyncio.TaskGroup() as clients:
                for _ in range(concurrency):
                    clients.create_task(client(started + seconds, record))
            return time.perf_counter() - started

        # Warm up: connections, the router's upstream pool, the first requests' lazy work.
        await run(warmup_s, record=False)
        meter = CpuUse(groups or {})
        meter.start()
        elapsed = await run(duration_s, record=True)
        meter.stop()
    return LoadResult(
        label, len(latencies), summary_ms(latencies), answers, elapsed, meter.client(), meter.used
    )


WRK_SCRIPT = """
-- Counts answers that are not 200 with the expected body (args[1]); prints one JSON line.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) expected = args[1]; wrong = 0 end
function response(status, headers, body)
  if status ~= 200 or body ~= expected then wrong = wrong + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("wrong") end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "wrong": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


async def wrk_load(
    label: str,
    url: str,
    expected: bytes,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    groups: dict[str, list[int]] | None = None,
) -> LoadResult:
    """The same load as :func:`load`, generated by ``wrk`` (one thread, C, epoll): a client
    that takes far less of the shared CPUs than an aiohttp event loop does. wrk runs whole
    seconds: durations are rounded (at least 1 s). Its percentiles count every answer."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()

        async def run(seconds: float) -> dict[str, Any]:
            command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s"]
            command += ["--timeout", "30s", "-s", script.name, url, "--", expected.decode()]
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await process.communicate()
            lines = [line for line in out.decode().splitlines() if line.startswith("WRK ")]
            if process.returncode or not lines:
                raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()[-500:]}")
            parsed: dict[str, Any] = json.loads(lines[-1][4:])
            return parsed

        if warmup_s:
            await run(warmup_s)
        meter = CpuUse(groups or {})
        meter.start()
        ran = await run(duration_s)
        meter.stop()
    answers: Counter[str] = Counter()
    ok = ran["requests"] - ran["wrong"]
    answers["200"] = ok
    for kind in ("wrong", "connect", "read", "write", "timeout"):
        if ran[kind]:
            answers[kind if kind != "wrong" else "not 200 with the expected body"] = ran[kind]
    latency = {key: round(ran[f"{key}_us"] / 1000, 2) for key in ("p50", "p90", "p99", "max")}
    return LoadResult(
        label, ok, dict(latency), answers, ran["duration_us"] / 1e6, meter.client(), meter.used
    )


@dataclass(frozen=True)
class Switch:
    """One alias switch: the PUT's answer, and when the router served the new version."""

    version: str
    status: int
    put_s: float
    api_switch_ms: float | None
    propagated_s: float | None
    polls: int
    error: str | None = None
    parts_s: tuple[float, float, float] | None = None
    """(PUT sent → write stored, → every router applied it, → PUT answered)."""
    sent_at: float = 0.0
    """``time.perf_counter()`` just before the PUT."""
    revision: int = 0
    """The alias bucket revision the PUT wrote (its ETag)."""


class HttpError(Exception):
    """An answer :class:`Connection` cannot read."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection whose requests are written and answers read by
    hand: the switch phase's client. It shares the CPUs with the platform, and aiohttp took
    0.7-1.0 ms of them per switch (a PUT and a GET) against 0.23-0.30 ms for this; in four
    interleaved pairs of 300 switches, each switch was 0.3-2.0 ms faster at p50 with it."""

    def __init__(self, base_url: str, timeout_s: float, headers: dict[str, str] | None = None):
        self._authority = base_url.split("//", 1)[1].rstrip("/")
        host, _, port = self._authority.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._timeout_s = timeout_s
        self._extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> Answer:
        """Send one request and read its answer; the connection is closed on any failure
        (and opened again by the next request)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._exchange(method, path, body)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, method: str, path: str, body: bytes) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._authority}\r\n{self._extra}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"not an HTTP answer: {lines[0]!r}") from None
        headers = {}
        for line in filter(None, lines[1:]):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status in (204, 304) or method == "HEAD":
            payload = b""
        elif "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await _read_chunked(reader)
        else:
            raise HttpError("an answer framed by neither Content-Length nor chunked")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, headers, payload)

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
        pass
    return b"".join(chunks)


_CLIENT_FAILURES = (
    OSError,
    TimeoutError,
    ValueError,  # a length or chunk size that is not a number
    HttpError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,  # a head past the stream's 64 KiB
)


async def switch_once(
    api: Connection,
    probe: Connection,
    alias_path: str,
    router_path: str,
    version: str,
    poll_s: float,
    timeout_s: float,
) -> Switch:
    """PUT the alias to ``version``; poll the router until it answers with that version."""
    expected = body_of(version)
    sent = time.perf_counter()
    try:
        response = await api.request("PUT", alias_path, json.dumps({"version": version}).encode())
    except _CLIENT_FAILURES as exc:
        return Switch(version, 0, time.perf_counter() - sent, None, None, 0, type(exc).__name__)
    put_s = time.perf_counter() - sent
    header = response.headers.get("x-dockyard-switch-ms")
    api_ms = float(header) if header else None
    status = response.status
    error = None if status == 200 else f"PUT {status}"
    switch = Switch(
        version,
        status,
        put_s,
        api_ms,
        None,
        0,
        sent_at=sent,
        revision=int(response.headers.get("etag", '"0"').strip('"') or 0),
    )
    polls = 0
    deadline = sent + timeout_s
    while time.perf_counter() < deadline:
        polls += 1
        try:
            answer = await probe.request("GET", router_path)
            at = time.perf_counter()
            if answer.status != 200:
                error = error or f"GET {answer.status}"
            elif answer.body == expected:
                return replace(switch, propagated_s=at - sent, polls=polls, error=error)
        except _CLIENT_FAILURES as exc:
            error = error or f"GET {type(exc).__name__}"
        await asyncio.sleep(poll_s)
    return replace(switch, polls=polls, error=error or "timeout")


async def switches(
    platform_: Platform,
    count: int,
    poll_s: float,
    timeout_s: float,
    *,
    observed: bool = False,
    first: int = 0,
) -> list[Switch]:
    """``count`` alias switches alternating v2, v1, ... (the alias starts on v1; ``first``
    continues an earlier phase's count). ``observed``: a NATS subscriber also follows the
    alias writes and the heartbeats, to split each switch (it costs the CPUs the platform
    shares with it, so the headline phase runs without it)."""
    admin = {"Authorization": f"Bearer {platform_.admin_token}"}
    alias_path = f"{DEPLOYMENT_PATH}/aliases/{ALIAS}"
    router_path = f"/{OWNER}/{PROJECT}/{DEPLOYMENT}/{ALIAS}/predict/"
    request_timeout_s = max(5.0, timeout_s * 2)
    api = Connection(platform_.api_url, request_timeout_s, admin)
    probe = Connection(platform_.router_url, request_timeout_s)
    results: list[Switch] = []
    timeline = Timeline()
    assert platform_.process is not None
    nats_url = nats_url_of(platform_.process.pid) if observed else None
    nc = await timeline.follow(nats_url) if nats_url else None
    try:
        for index in range(first, first + count):
            version = VERSIONS[(index + 1) % 2]
            results.append(
                await switch_once(api, probe, alias_path, router_path, version, poll_s, timeout_s)
            )
    finally:
        api.close()
        probe.close()
        if nc is not None:
            await nc.close()
    if not timeline.writes:
        return results
    # Split once all are done: not between a PUT's answer and the GET that times it.
    return [
        replace(s, parts_s=timeline.split(s.sent_at, s.sent_at + s.put_s, s.revision))
        if s.status
        else s
        for s in results
    ]


# --- reporting -------------------------------------------------------------------------------


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """Whether ``value`` meets ``target`` (never an assertion)."""
    if value is None:
        return "no data"
    met = value >= target if higher_is_better else value <= target
    return "meets" if met else "MISSES"


@dataclass(frozen=True)
class Throughput:
    """Phase 1 with one load generator: 32 clients and one client, direct and via the router."""

    client: str
    direct: LoadResult
    routed: LoadResult
    direct_idle: LoadResult
    router_idle: LoadResult

    def fields(self) -> dict[str, Any]:
        """The figures, as the JSON line names them."""
        d, r = self.direct.latency_ms, self.routed.latency_ms
        di, ri = self.direct_idle.latency_ms, self.router_idle.latency_ms
        ratio = self.routed.rps / self.direct.rps if self.direct.rps else 0.0
        routed = self.routed
        return {
            "direct_rps": round(self.direct.rps, 1),
            "router_rps": round(routed.rps, 1),
            "ratio": round(ratio, 3),
            "direct_p50_ms": d["p50"],
            "direct_p99_ms": d["p99"],
            "router_p50_ms": r["p50"],
            "router_p99_ms": r["p99"],
            "added_p50_ms": difference(r["p50"], d["p50"]),
            "idle_direct_p50_ms": di["p50"],
            "idle_router_p50_ms": ri["p50"],
            "idle_added_p50_ms": difference(ri["p50"], di["p50"]),
            "router_cpu_us_per_request": (
                round(routed.cpu["router"] / routed.ok * 1e6) if routed.ok and routed.cpu else None
            ),
            "client_cpu_us_per_request": (
                round(routed.client_cpu_s / routed.ok * 1e6) if routed.ok else None
            ),
            "others_cpu_s_direct": round(self.direct.cpu.get("others", 0.0), 1),
            "others_cpu_s_router": round(routed.cpu.get("others", 0.0), 1),
            "direct_errors": self.direct.answers.total() - self.direct.ok,
            "router_errors": routed.answers.total() - routed.ok,
        }


def cross_check(routed: LoadResult, best_direct: LoadResult) -> dict[str, Any]:
    """The router's figures against the fastest direct run of any load generator."""
    return {
        "ratio_vs_best_direct": (
            round(routed.rps / best_direct.rps, 3) if best_direct.rps else 0.0
        ),
        "added_p50_vs_best_direct_ms": difference(
            routed.latency_ms["p50"], best_direct.latency_ms["p50"]
        ),
    }


def difference(later: float | None, earlier: float | None) -> float | None:
    """``later - earlier`` rounded to 0.01, None if either is missing."""
    return None if later is None or earlier is None else round(later - earlier, 2)


def print_throughput(args: argparse.Namespace, run: Throughput, headline: bool) -> None:
    """The readable table of one load generator's phase 1."""
    cpus = os.cpu_count()
    fields = run.fields()
    print(
        f"throughput{' (headline)' if headline else ''}: {args.concurrency} keep-alive clients "
        f"from {CLIENTS[run.client]}, {args.duration:g} s each after {args.warmup:g} s warm-up; "
        f"the load generator shares the {cpus} CPUs with the platform"
    )
    print(f"  {'':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  answers")
    for result in (run.direct, run.routed):
        s = result.latency_ms
        print(
            f"  {result.label:8} {result.rps:9.1f} {s['p50']!s:>8} {s['p99']!s:>8} "
            f"{s['max']!s:>8}  {dict(result.answers)}"
        )
    for result in (run.direct, run.routed):
        per_request = {
            role: round(seconds / result.ok * 1e6) if result.ok else None
            for role, seconds in result.cpu.items()
            if role != "others"
        }
        print(
            f"  {result.label:8} CPU µs per request {per_request}; others (outside the run) "
            f"{result.cpu.get('others', 0.0):.1f} CPU s"
        )
    ratio, added, idle_added = fields["ratio"], fields["added_p50_ms"], fields["idle_added_p50_ms"]
    print(
        f"  ratio router/direct {ratio:.2f}   target >= {TARGET_RATIO}   "
        f"{verdict(ratio, TARGET_RATIO, True)}"
    )
    print(
        f"  added p50 {added} ms   target <= "
        f"{TARGET_ADDED_P50_MS:g} ms   {verdict(added, TARGET_ADDED_P50_MS, False)}"
    )
    print(
        f"  one client (no queueing, {args.idle_duration:g} s each): direct p50 "
        f"{fields['idle_direct_p50_ms']} ms ({run.direct_idle.rps:.0f} req/s), router p50 "
        f"{fields['idle_router_p50_ms']} ms ({run.router_idle.rps:.0f} req/s): the hop adds "
        f"{idle_added} ms   target <= {TARGET_ADDED_P50_MS:g} ms   "
        f"{verdict(idle_added, TARGET_ADDED_P50_MS, False)}"
    )


def report(
    args: argparse.Namespace,
    upstream: str,
    runs: list[Throughput],
    switched: list[Switch],
    observed: list[Switch],
    switch_cpu_s: dict[str, float],
) -> dict[str, Any]:
    """Print the readable summary; return the JSON line's fields (the first run's figures
    are the headline; every run's are under ``by_client``)."""
    propagated = [s.propagated_s for s in switched if s.propagated_s is not None]
    prop = summary_ms(propagated)
    put = summary_ms([s.put_s for s in switched])
    api_ms = [s.api_switch_ms / 1000 for s in switched if s.api_switch_ms is not None]
    api_wait = summary_ms(api_ms)
    errors = [s for s in switched if s.error is not None]
    observed_errors = [s for s in observed if s.error is not None]
    polls = summary_ms([s.polls / 1000 for s in switched])  # counts, through the ms helper
    cpus = os.cpu_count()

    print(f"environment: {cpus} CPUs, Python {platform.python_version()}, {platform.platform()}")
    print(
        "set-up: the embedded platform (python -m dockyard_platform: nats-server, redis-server, "
        f"API, builder, scheduler, a router with {ROUTER_WORKERS} workers); one replica of each "
        "version on "
        f"{TARGET}; direct upstream {upstream}"
    )
    for index, run in enumerate(runs):
        print_throughput(args, run, headline=index == 0 and len(runs) > 1)
    best = max((run.direct for run in runs), key=lambda result: result.rps)
    cross = cross_check(runs[0].routed, best)
    if len(runs) > 1:
        # How fast the replica answers depends on the generator (wrk's back-to-back asks cost
        # it more CPU per request): the headline's router figures against the fastest direct.
        print(
            f"  headline router vs the fastest direct of the run ({best.rps:.1f} req/s, p50 "
            f"{best.latency_ms['p50']} ms): ratio {cross['ratio_vs_best_direct']:.2f} "
            f"({verdict(cross['ratio_vs_best_direct'], TARGET_RATIO, True)}), added p50 "
            f"{cross['added_p50_vs_best_direct_ms']} ms "
            f"({verdict(cross['added_p50_vs_best_direct_ms'], TARGET_ADDED_P50_MS, False)})"
        )
    print(
        f"  (at concurrency {args.concurrency} a request mostly waits its turn for a CPU: "
        f"p50 ≈ {args.concurrency} / throughput, so the added p50 there follows the ratio)"
    )
    print(
        f"switch propagation: {len(switched)} PUTs of alias {ALIAS} alternating v1/v2, "
        f"router polled every {args.poll_ms:g} ms (max {args.switch_timeout:g} s); "
        f"{ROUTER_WORKERS} router workers sharing the port"
    )
    print(
        f"  PUT sent → router serves new version  p50 {prop['p50']} ms, p90 {prop['p90']}, "
        f"p99 {prop['p99']} (target p99 <= {TARGET_SWITCH_P99_MS:g}: "
        f"{verdict(prop['p99'], TARGET_SWITCH_P99_MS, False)}), max {prop['max']}"
    )
    print(f"  PUT duration                          p50 {put['p50']} ms, p99 {put['p99']}")
    print(
        f"  API X-Dockyard-Switch-Ms              p50 {api_wait['p50']} ms, p99 {api_wait['p99']}"
    )
    print(f"  polls until new version               p50 {polls['p50']}, max {polls['max']}")
    per_switch = {
        role: round(seconds * 1000 / len(switched), 2)
        for role, seconds in sorted(switch_cpu_s.items(), key=lambda item: -item[1])
        if switched
    }
    platform_ms = sum(ms for role, ms in per_switch.items() if role not in ("client", "others"))
    print(
        f"  CPU ms per switch, by role            {per_switch}: the platform {platform_ms:.2f} "
        "('router' is every worker, 'platform' the launcher, builder and scheduler; 'client' "
        "is this process, 'others' the rest of the machine)"
    )
    split = [s.parts_s for s in observed if s.parts_s is not None]
    parts = [summary_ms([p[i] for p in split]) for i in range(3)]
    watched = summary_ms([s.propagated_s for s in observed if s.propagated_s is not None])
    if split:
        print(
            f"  where it goes, {len(observed)} more switches with a NATS subscriber following "
            f"the alias writes and heartbeats (p50 {watched['p50']} ms, p99 {watched['p99']} "
            "with it):"
        )
        print(
            f"    PUT → write stored p50 {parts[0]['p50']} / p99 {parts[0]['p99']} ms; "
            f"→ every router applied p50 {parts[1]['p50']} / p99 {parts[1]['p99']} ms; "
            f"→ PUT answered p50 {parts[2]['p50']} / p99 {parts[2]['p99']} ms"
        )
    for name, failed, of in (
        ("switch_errors", errors, switched),
        ("observed_switch_errors", observed_errors, observed),
    ):
        print(
            f"  {name} {len(failed)}: "
            f"{dict(Counter(s.error for s in failed)) if failed else 'none'}; "
            f"PUT answers {dict(Counter(str(s.status) for s in of))}"
        )
    return {
        "load_generator": runs[0].client,
        **runs[0].fields(),
        **cross,
        "by_client": {run.client: run.fields() for run in runs},
        "switch_p50_ms": prop["p50"],
        "switch_p90_ms": prop["p90"],
        "switch_p99_ms": prop["p99"],
        "switch_max_ms": prop["max"],
        "switch_put_p50_ms": put["p50"],
        "switch_put_p99_ms": put["p99"],
        "switch_api_p50_ms": api_wait["p50"],
        "switch_api_p99_ms": api_wait["p99"],
        "switch_api_to_write_p50_ms": parts[0]["p50"],
        "switch_api_to_write_p99_ms": parts[0]["p99"],
        "switch_write_to_applied_p50_ms": parts[1]["p50"],
        "switch_write_to_applied_p99_ms": parts[1]["p99"],
        "switch_applied_to_answer_p50_ms": parts[2]["p50"],
        "switch_applied_to_answer_p99_ms": parts[2]["p99"],
        "switch_cpu_ms_per_switch": per_switch,
        "switch_observed_p50_ms": watched["p50"],
        "switch_observed_p99_ms": watched["p99"],
        "switch_errors": len(errors),
        "switches": len(switched),
        "observed_switch_errors": len(observed_errors),
        "observed_switches": len(observed),
        "router_processes": ROUTER_WORKERS,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "cpu_count": cpus,
        "target_ratio": TARGET_RATIO,
        "target_added_p50_ms": TARGET_ADDED_P50_MS,
        "target_switch_p99_ms": TARGET_SWITCH_P99_MS,
    }


# --- the run ---------------------------------------------------------------------------------


async def benchmark(platform_: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """Set up through the API, then the throughput and switch phases; the JSON fields."""
    upstream = await set_up(platform_, args.ready_timeout)
    direct_url = f"{upstream.rstrip('/')}/"
    router_url = f"{platform_.router_url}/{OWNER}/{PROJECT}/{DEPLOYMENT}/v1/predict/"
    expected = body_of("v1")
    assert platform_.process is not None
    groups = process_groups(platform_.process.pid)
    runs = []
    for client in args.clients:
        generate = wrk_load if client == "wrk" else load
        concurrency, duration, warmup = args.concurrency, args.duration, args.warmup
        direct = await generate(
            "direct", direct_url, expected, concurrency, duration, warmup, groups
        )
        routed = await generate(
            "router", router_url, expected, concurrency, duration, warmup, groups
        )
        # One client, no queueing: what the proxy hop costs a single request.
        idle = args.idle_duration
        direct_idle = await generate("direct", direct_url, expected, 1, idle, 0.2)
        router_idle = await generate("router", router_url, expected, 1, idle, 0.2)
        runs.append(Throughput(client, direct, routed, direct_idle, router_idle))
    poll_s, timeout_s = args.poll_ms / 1000.0, args.switch_timeout
    meter = CpuUse(process_groups(platform_.process.pid, SWITCH_ROLES))
    meter.start()
    switched = await switches(platform_, args.switches, poll_s, timeout_s)
    meter.stop()
    observed = await switches(
        platform_, args.observed_switches, poll_s, timeout_s, observed=True, first=args.switches
    )
    return report(args, upstream, runs, switched, observed, meter.used)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=32, help="load clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument(
        "--idle-duration", type=float, default=2.0, help="seconds of one-client runs"
    )
    parser.add_argument("--switches", type=int, default=200, help="alias switches")
    parser.add_argument(
        "--observed-switches",
        type=int,
        default=100,
        help="more switches, with a NATS subscriber splitting each (0: none)",
    )
    parser.add_argument("--poll-ms", type=float, default=0.5, help="router poll interval")
    parser.add_argument("--switch-timeout", type=float, default=2.0, help="seconds per switch")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds per version")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (data, logs)")
    parser.add_argument(
        "--clients",
        default="wrk,aiohttp" if shutil.which("wrk") else "aiohttp",
        help="load generators, comma-separated, the headline first "
        "(default: wrk,aiohttp when wrk is installed, else aiohttp)",
    )
    args = parser.parse_args(argv)
    args.clients = [name.strip() for name in args.clients.split(",") if name.strip()]
    unknown = [name for name in args.clients if name not in CLIENTS]
    if unknown or not args.clients:
        parser.error(f"--clients: choose from {', '.join(CLIENTS)}")
    if "wrk" in args.clients and not shutil.which("wrk"):
        parser.error("--clients wrk: wrk is not installed (apt-get install wrk)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start the platform, run the benchmark, stop it; print the JSON line last."""
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="dockyard-bench-router-"))
    platform_ = Platform(work_dir)
    try:
        with sigterm_as_exit():
            platform_.start()
            fields = asyncio.run(benchmark(platform_, args))
    except KeyboardInterrupt:
        print("interrupted: stopping the platform; nothing measured", file=sys.stderr)
        return 130
    except RuntimeError:
        print(f"the platform printed:\n{platform_.tail()}", file=sys.stderr)
        raise
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
