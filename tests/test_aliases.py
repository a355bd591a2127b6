"""Aliases end to end: set, call through, canary, switch, roll back, and guard stopping."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from dockyard_common import RouterHeartbeat
from dockyard_common.subjects import ROUTER_HEARTBEAT_SUBJECT
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import deploy_ready, put_deployment, wait_for_version

pytestmark = pytest.mark.e2e


def model(answer: str) -> bytes:
    """A WSGI endpoint that answers ``answer``: each version answers its own."""
    return (
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [b'{answer}']\n"
    ).encode()


async def answers_through(
    client: httpx.AsyncClient, url: str, until: str, within_s: float = 5.0
) -> httpx.Response:
    """Call ``url`` until it answers ``until`` (the router applies alias events async)."""
    deadline = time.monotonic() + within_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        last = await client.get(url)
        if last.status_code == 200 and last.text == until:
            return last
        await asyncio.sleep(0.02)
    seen = f"{last.status_code} {last.text!r}" if last is not None else "nothing"
    raise AssertionError(f"{url} did not answer {until!r} within {within_s} s; last: {seen}")


@pytest.fixture
async def two_versions(api: httpx.AsyncClient, names: Names) -> str:
    await put_deployment(api, names, ["local-eu"])
    await deploy_ready(api, names, "v1", app=model("v1"))
    await deploy_ready(api, names, "v2", app=model("v2"))
    return f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/aliases"


async def test_an_alias_switches_rolls_back_and_keeps_its_history(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    deployment = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
    url = f"{deployment}/production/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await api.put(f"{aliases}/production", json={"version": "v1"})).status_code == 200
        first = await answers_through(client, url, "v1")
        assert first.headers["X-Dockyard-Version"] == "v1"
        assert first.headers["X-Dockyard-Alias"] == "production"

        assert (await api.put(f"{aliases}/production", json={"version": "v2"})).status_code == 200
        await answers_through(client, url, "v2")

        rolled = await api.post(f"{aliases}/production/rollback")
        assert rolled.status_code == 200 and rolled.json()["target"]["version"] == "v1"
        await answers_through(client, url, "v1")

    history: list[dict[str, Any]] = (await api.get(f"{aliases}/production/history")).json()["items"]
    assert [(h["action"], h["target"]["version"]) for h in history] == [
        ("rollback", "v1"),
        ("set", "v2"),
        ("set", "v1"),
    ]


async def test_a_canary_splits_traffic_by_weight_and_sticks_per_client(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/canary/predict/"
    assert (
        await api.put(f"{aliases}/canary", json={"weights": {"v1": 80, "v2": 20}})
    ).status_code == 200
    async with httpx.AsyncClient(timeout=10) as client:
        await answers_through(client, url, "v1")  # the alias has reached the router
        counts = Counter([(await client.get(url)).text for _ in range(400)])
        sticky = {
            (await client.get(url, headers={"X-Dockyard-Client-Key": "alice"})).text
            for _ in range(20)
        }
    assert set(counts) == {"v1", "v2"}
    assert 0.12 < counts["v2"] / 400 < 0.28, counts
    assert len(sticky) == 1


async def test_aliases_refuse_versions_that_are_not_ready_or_missing(
    api: httpx.AsyncClient, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    missing = await api.put(f"{aliases}/production", json={"version": "v9"})
    assert missing.status_code == 404 and "'v9' does not exist" in missing.json()["detail"]
    both = await api.put(f"{aliases}/production", json={"version": "v1", "weights": {"v1": 100}})
    assert both.status_code == 422
    uneven = await api.put(f"{aliases}/production", json={"weights": {"v1": 50, "v2": 20}})
    assert uneven.status_code == 422 and "add up to 100" in uneven.text
    nothing = await api.post(f"{aliases}/staging/rollback")
    assert nothing.status_code == 404


async def test_stopping_an_aliased_version_is_refused_unless_forced(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    versions = f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/versions"
    assert (await api.put(f"{aliases}/production", json={"version": "v1"})).status_code == 200
    refused = await api.delete(f"{versions}/v1")
    assert refused.status_code == 409 and "production" in refused.json()["detail"]

    stopping = await api.delete(f"{versions}/v2")
    assert stopping.status_code == 202 and stopping.json()["status"] == "stopping"
    stopped = await wait_for_version(api, names, "v2", "stopped")
    assert {s["state"] for s in stopped["endpoint_states"]} == {"stopped"}
    direct = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v2/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        gone = await client.get(direct)  # the router knows it stopped: gone, not unknown
        assert gone.status_code == 410 and "was stopped" in gone.json()["detail"], gone.text

    not_ready = await api.put(f"{aliases}/production", json={"version": "v2"})
    assert not_ready.status_code == 409 and "is stopped" in not_ready.json()["detail"]


async def test_an_alias_change_answers_only_once_every_router_serves_it(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    deployment = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
    timings = []
    async with httpx.AsyncClient(timeout=10) as client:
        for version in ["v1", "v2"] * 5:
            switched = await api.put(f"{aliases}/production", json={"version": version})
            assert switched.status_code == 200, switched.headers
            assert int(switched.headers["X-Dockyard-Routers"]) >= 1
            timings.append(float(switched.headers["X-Dockyard-Switch-Ms"]))
            # No polling: the answer came once every router process serves the change. Each
            # call on a new connection, so they spread over the processes sharing the port.
            for _ in range(4):
                answer = await client.get(
                    f"{deployment}/production/predict/", headers={"Connection": "close"}
                )
                assert answer.text == version
    print(f"\nalias switch live on every router in {sorted(timings)[len(timings) // 2]} ms (p50)")


async def test_a_router_that_does_not_apply_a_change_is_named_with_202(
    api: httpx.AsyncClient, names: Names, two_versions: str, nats_client: NatsClient
) -> None:
    aliases = two_versions
    assert (await api.put(f"{aliases}/production", json={"version": "v1"})).status_code == 200
    stuck = RouterHeartbeat(process=f"stuck-{names.owner}", region="eu", applied_through=0)
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            await nats_client.publish(ROUTER_HEARTBEAT_SUBJECT, stuck.model_dump_json().encode())
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat())
    try:
        await asyncio.sleep(0.4)  # let the API hear it beat
        lagging = await api.put(f"{aliases}/production", json={"version": "v2"})
        assert lagging.status_code == 202
        assert lagging.headers["X-Dockyard-Lagging"] == stuck.process
        assert float(lagging.headers["X-Dockyard-Switch-Ms"]) >= 2000
    finally:
        stop.set()
        await beating
    # Once it stops beating it is gone, and changes answer 200 again.
    deadline = time.monotonic() + 10
    while (await api.put(f"{aliases}/production", json={"version": "v1"})).status_code != 200:
        assert time.monotonic() < deadline, "a router that stopped beating was never dropped"


async def test_switching_under_load_fails_no_request_and_serves_only_old_or_new(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, two_versions: str
) -> None:
    aliases = two_versions
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/live/predict/"
    assert (await api.put(f"{aliases}/live", json={"version": "v1"})).status_code == 200
    answers: Counter[str] = Counter()
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            answer = await client.get(url)
            answers[f"{answer.status_code} {answer.text}"] += 1

    async with httpx.AsyncClient(timeout=10) as client:
        workers = [asyncio.create_task(load(client)) for _ in range(8)]
        for version in ["v2", "v1"] * 5:
            assert (await api.put(f"{aliases}/live", json={"version": version})).status_code == 200
            await asyncio.sleep(0.05)  # let the load run between switches
        rolled = await api.post(f"{aliases}/live/rollback")
        assert rolled.status_code == 200
        stop.set()
        await asyncio.gather(*workers)
    assert set(answers) <= {"200 v1", "200 v2"}, answers
    assert answers["200 v1"] > 0 and answers["200 v2"] > 0
