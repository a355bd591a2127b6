"""The router's data plane against real upstream processes: replicas, failover, timeouts.

The upstreams here are real HTTP servers (the endpoint runner's, ``dockyard_server``) started by
the test, written into a state of record of the test's own as the API writes them once the
scheduler reported them ready: in the version's endpoint states.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from dockyard_builder.runner import RUNNER_FILES
from dockyard_common import EndpointState, WorkloadState
from dockyard_platform.servers import free_port
from tests.harness.fixtures import Names
from tests.harness.infrastructure import Infrastructure
from tests.harness.router import PrivateRecord, private_record, record_endpoint

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "dataplane-test-admin"  # noqa: S105 - a test's own router

REPLICA = """
import sys, time, dockyard_server
NAME = sys.argv[2].encode()

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(2)
    elif environ["PATH_INFO"] == "/busy":
        time.sleep(0.02)  # a request stays in flight a while
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(NAME)))])
    return [NAME]

dockyard_server.serve(app, "127.0.0.1", int(sys.argv[1]), max_requests=8)
"""


def wait_listening(port: int, within_s: float = 10.0) -> None:
    """Until something accepts connections on ``port``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {within_s} s") from None
            time.sleep(0.02)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[[str], tuple[str, subprocess.Popen[bytes]]]]:
    """Start a replica answering its name; its URL and process."""
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(script), str(port), name],
            env={**os.environ, "PYTHONPATH": str(RUNNER_FILES)},
        )
        started.append(process)
        wait_listening(port)
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in started:
        process.kill()
        process.wait()


async def serve_endpoint(
    js: JetStreamContext, names: Names, target: str, region: str, upstreams: list[str]
) -> None:
    """Record that endpoint ``predict`` of version v1 runs on ``upstreams`` on ``target``,
    as the API does once the scheduler reported its replicas ready."""
    state = EndpointState(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        version="v1",
        endpoint="predict",
        target=target,
        region=region,
        state=WorkloadState.READY,
        upstreams=upstreams,
    )
    await record_endpoint(js, names, state)


async def until_answers(
    client: httpx.AsyncClient, url: str, body: str, within_s: float = 10.0, **kwargs: object
) -> None:
    """Call ``url`` until it answers ``body`` (routes reach the routers asynchronously)."""
    deadline = time.monotonic() + within_s
    last = "nothing"
    while time.monotonic() < deadline:
        answer = await client.get(url, **kwargs)  # type: ignore[arg-type]
        if answer.status_code == 200 and answer.text == body:
            return
        last = f"{answer.status_code} {answer.text[:200]!r}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} did not answer {body!r} within {within_s} s; last: {last}")


async def test_killing_a_replica_mid_load_fails_at_most_the_requests_in_flight_on_it(
    own_router: str,
    record: PrivateRecord,
    names: Names,
    replicas: Callable[[str], tuple[str, subprocess.Popen[bytes]]],
) -> None:
    first, doomed = replicas("a")
    second, _ = replicas("b")
    await serve_endpoint(record.js, names, "local-eu", "eu", [first, second])
    url = f"{own_router}/{names.owner}/{names.project}/{names.deployment}/v1/predict/busy"
    answers: dict[str, Counter[str]] = {"GET": Counter(), "POST": Counter()}
    after_kill: Counter[str] = Counter()
    killed = asyncio.Event()
    stop = asyncio.Event()
    clients = 4  # per method: at most this many requests of each are in flight at the kill

    async def load(client: httpx.AsyncClient, method: str) -> None:
        while not stop.is_set():
            sent_after_kill = killed.is_set()
            try:
                answer = await client.request(
                    method, url, content=b"x" if method == "POST" else None
                )
                outcome = answer.text if answer.status_code == 200 else str(answer.status_code)
            except httpx.TransportError:
                # The replica died after its answer had begun: the router can only cut the
                # connection (a request in flight on it, which may fail).
                outcome = "cut"
            answers[method][outcome] += 1
            if sent_after_kill:
                after_kill[outcome] += 1

    async with httpx.AsyncClient(timeout=10) as client:
        await until_answers(client, url, "a")
        await until_answers(client, url, "b")  # both replicas take requests
        workers = [
            asyncio.create_task(load(client, method))
            for method in ("GET", "POST")
            for _ in range(clients)
        ]
        await asyncio.sleep(0.5)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed.set()
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)
    gets, posts = answers["GET"], answers["POST"]
    # An idempotent request is retried on the other replica unless its answer had begun:
    # only those in flight on the killed replica at that moment may fail, and never a 502.
    assert {"a", "b"} <= set(gets) <= {"a", "b", "cut"} and gets["cut"] <= clients, gets
    # A POST may have been acted on: those on the killed replica at that moment fail (502, or
    # cut mid-answer), none other (a refused connection sent nothing: it goes elsewhere).
    failed = posts.total() - posts["a"] - posts["b"]
    assert set(posts) <= {"a", "b", "502", "cut"} and failed <= clients, posts
    # The killed replica is set aside: requests sent after the kill all land on the other.
    assert set(after_kill) == {"b"}, after_kill


@pytest.fixture
async def record(tmp_path: Path) -> AsyncIterator[PrivateRecord]:
    """A state of record of the test's own: no platform's scheduler acts on its versions."""
    async with private_record(tmp_path / "nats") as held:
        yield held


@pytest.fixture
async def own_router(
    infrastructure: Infrastructure, record: PrivateRecord, tmp_path: Path, names: Names
) -> AsyncIterator[str]:
    """A router process in region eu that fails over to us before ap (ap sorts first by
    name), with a 0.3 s timeout for the test's endpoint; on the test's record and the
    session's Redis."""
    port = free_port()
    env = dict(
        os.environ,
        DOCKYARD_NATS_URL=record.url,
        DOCKYARD_REDIS_URL=infrastructure.redis_url,
        DOCKYARD_ROUTER_PORT=str(port),
        DOCKYARD_REGION="eu",
        DOCKYARD_ADMIN_TOKEN=ADMIN_TOKEN,
        DOCKYARD_REGION_ORDER='["us", "ap"]',
        DOCKYARD_ENDPOINT_TIMEOUTS=json.dumps(
            {f"{names.owner}/{names.project}/{names.deployment}/predict": 0.3}
        ),
    )
    log = (tmp_path / "router.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait is async below
        [sys.executable, "-m", "dockyard_router"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, (tmp_path / "router.log").read_text()
                assert time.monotonic() < deadline, "the router did not start within 30 s"
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


async def test_a_request_fails_over_to_the_nearest_region_in_the_configured_order(
    own_router: str,
    record: PrivateRecord,
    names: Names,
    replicas: Callable[[str], tuple[str, subprocess.Popen[bytes]]],
) -> None:
    regions = {region: replicas(region) for region in ("eu", "us", "ap")}
    for region, (upstream, _) in regions.items():
        await serve_endpoint(record.js, names, f"local-{region}", region, [upstream])
    url = f"{own_router}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        await until_answers(client, url, "eu")  # its own region first
        preferred = await client.get(url, headers={"X-Dockyard-Region": "ap"})
        assert (preferred.text, preferred.headers["X-Dockyard-Region"]) == ("ap", "ap")

        _, eu = regions["eu"]
        eu.kill()
        eu.wait()
        # Its own region has no healthy upstream left: the nearest configured one serves,
        # from the very first request after the loss.
        for _ in range(5):
            answer = await client.get(url)
            assert answer.status_code == 200 and answer.text == "us", answer.text
            assert answer.headers["X-Dockyard-Region"] == "us"
        # The ops table shows the region's upstream set aside (this router has one process).
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        table = (await client.get(f"{own_router}/_ops/regions", headers=admin)).json()["items"]
        eu_row = next(row for row in table if row["region"] == "eu")
        assert eu_row["upstreams"] >= 1 and eu_row["healthy_upstreams"] < eu_row["upstreams"]


async def test_an_endpoint_timeout_answers_504_and_others_keep_the_default(
    own_router: str,
    record: PrivateRecord,
    names: Names,
    replicas: Callable[[str], tuple[str, subprocess.Popen[bytes]]],
) -> None:
    upstream, _ = replicas("slow")
    await serve_endpoint(record.js, names, "local-eu", "eu", [upstream])
    base = f"{own_router}/{names.owner}/{names.project}/{names.deployment}/v1/predict"
    async with httpx.AsyncClient(timeout=10) as client:
        await until_answers(client, f"{base}/", "slow")
        started = time.monotonic()
        answer = await client.get(f"{base}/slow")
        took = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert "did not answer within 0.3 s" in answer.json()["detail"]
    assert took < 1.5  # the endpoint's 0.3 s, not the router's 60 s default
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{base}/")).text == "slow"  # a fast call still answers
