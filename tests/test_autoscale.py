"""Autoscaling on request load and scale to zero, on the embedded default: real router,
scheduler and endpoint processes, bounded load from the test.

A platform of the module's own (its own NATS), with the autoscaler's windows shortened
(stable 6 s, panic 2 s) so that a test takes seconds, not minutes; the rule is the same.
Its router holds at most 4 requests per idle endpoint and worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dockyard_common.subjects import version_key
from dockyard_scheduler.drivers.local.replicas import ReplicaRecord, load_records
from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version

pytestmark = pytest.mark.e2e

SLOW_APP = b"""\
import time


def app(environ, start_response):
    time.sleep(0.1)  # a model working: a request stays in flight a while
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

AUTOSCALE = {
    "DOCKYARD_AUTOSCALE_STABLE_S": "6",
    "DOCKYARD_AUTOSCALE_PANIC_S": "2",
    "DOCKYARD_SCALE_DOWN_DRAIN_S": "1",
    "DOCKYARD_HOLD_QUEUE": "4",
}

SLOW_START_APP = b"""\
import time

time.sleep(1.5)  # a model loading: a start from zero takes a while


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"awake"]
"""


@pytest.fixture(scope="module")
def scaling_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    platform = start_platform_process(tmp_path_factory.mktemp("autoscale"), AUTOSCALE)
    yield platform
    platform.stop()


async def deploy(
    api: httpx.AsyncClient,
    names: Names,
    version: str,
    replicas: dict[str, Any],
    app: bytes = SLOW_APP,
) -> None:
    code = await upload_blob(api, names, tar_gz({"app.py": app}))
    created = await create_version(
        api,
        names,
        {
            "name": version,
            "code": {"blob": code},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
            "replicas": {"predict": replicas},
        },
    )
    assert created.status_code == 201, created.text
    await wait_for_version(api, names, version, "ready", within_s=60)


async def endpoint_state(api: httpx.AsyncClient, names: Names, version: str) -> dict[str, Any]:
    """The state of predict on local-eu, as the record holds it."""
    url = (
        f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}"
        f"/versions/{version}"
    )
    [state] = (await api.get(url)).json()["endpoint_states"]
    return state  # type: ignore[no-any-return]


async def serving(api: httpx.AsyncClient, names: Names, version: str) -> tuple[int, int | None]:
    """(replicas serving, replicas the autoscaler wants) of predict on local-eu."""
    state = await endpoint_state(api, names, version)
    return len(state["upstreams"]), state.get("desired_replicas")


def replica_records(platform: RunningPlatform, names: Names, version: str) -> list[ReplicaRecord]:
    """The adoption records of predict's replicas on this machine (live or not)."""
    prefix = f"{version_key(names.owner, names.project, names.deployment, version)}/predict/"
    directory = platform.data_dir / "runtime" / "replicas"
    return [record for _, record in load_records(directory) if record.key.startswith(prefix)]


async def until_stopped(records: list[ReplicaRecord], within_s: float, what: str) -> None:
    """Wait until none of the processes ``records`` name runs any more."""

    async def stopped() -> bool:
        return not any(record.alive() for record in records)

    await until(stopped, within_s, what)


class Load:
    """``clients`` callers in a loop until stopped, counting answers by outcome."""

    def __init__(self, url: str, clients: int) -> None:
        self.outcomes: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._url = url
        self._tasks = [asyncio.create_task(self._call()) for _ in range(clients)]

    async def _call(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = await client.get(self._url)
                    self.outcomes[str(answer.status_code)] += 1
                except httpx.TransportError as exc:
                    self.outcomes[type(exc).__name__] += 1

    async def stop(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes


async def until(predicate: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.25)


async def test_replicas_rise_under_load_and_fall_after_without_a_failed_request(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    async with admin_client(scaling_platform) as api:
        await put_deployment(api, names, ["local-eu"])
        await deploy(api, names, "v1", {"min": 1, "max": 3, "target_concurrency": 1})
        assert await serving(api, names, "v1") == (1, None)
        url = f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
        heavy = Load(f"{url}/v1/predict/", clients=6)
        light = Load(f"{url}/v1/predict/", clients=1)  # runs through the scale-down too

        async def risen() -> bool:
            return (await serving(api, names, "v1"))[0] >= 2

        await until(risen, 30, "no second replica under a load of 6 in flight")
        peak = await serving(api, names, "v1")
        at_peak = replica_records(scaling_platform, names, "v1")
        assert len(at_peak) >= 2, at_peak
        heavy_outcomes = await heavy.stop()

        async def fallen() -> bool:
            return await serving(api, names, "v1") == (1, 1)

        await until(fallen, 40, f"replicas did not fall back to 1 (peak {peak})")
        [staying] = [r for r in replica_records(scaling_platform, names, "v1") if not r.retiring]
        # The light load runs on through the drain and the stop of the replicas removed.
        await until_stopped(
            [r for r in at_peak if r.index != staying.index],
            15,
            "the replicas scaled down still run",
        )
        assert [r.index for r in replica_records(scaling_platform, names, "v1")] == [staying.index]
        light_outcomes = await light.stop()
    assert set(heavy_outcomes) == {"200"}, heavy_outcomes
    assert set(light_outcomes) == {"200"}, light_outcomes
    assert light_outcomes["200"] > 20


async def test_a_canary_at_ten_percent_runs_fewer_replicas_than_the_main_version(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    scaled = {"min": 1, "max": 4, "target_concurrency": 1}
    async with admin_client(scaling_platform) as api:
        await put_deployment(api, names, ["local-eu"])
        await deploy(api, names, "v1", scaled)
        await deploy(api, names, "v2", scaled)
        aliases = (
            f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/aliases"
        )
        split = await api.put(f"{aliases}/production", json={"weights": {"v1": 90, "v2": 10}})
        assert split.status_code in (200, 201), split.text
        url = f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
        load = Load(f"{url}/production/predict/", clients=8)

        async def main_scaled() -> bool:
            return (await serving(api, names, "v1"))[0] >= 3

        try:
            await until(main_scaled, 40, "the main version did not scale up")
            await asyncio.sleep(2)
            main, canary = await serving(api, names, "v1"), await serving(api, names, "v2")
        finally:
            outcomes = await load.stop()
    assert set(outcomes) == {"200"}, outcomes
    assert canary[0] < main[0], (main, canary)
    assert canary[0] <= 2, canary


async def idle_endpoint(
    api: httpx.AsyncClient, names: Names, platform: RunningPlatform, *, past_drain: bool = True
) -> list[ReplicaRecord]:
    """Deploy v1 (slow to start) with min 0 and idle_s 2, and wait until it idles (and its
    last replica is stopped, unless not ``past_drain``); the records of the replicas it ran."""
    await put_deployment(api, names, ["local-eu"])
    await deploy(api, names, "v1", {"min": 0, "max": 2, "idle_s": 2}, app=SLOW_START_APP)
    ran = replica_records(platform, names, "v1")
    assert len(ran) == 1, ran

    async def idle() -> bool:
        return (await endpoint_state(api, names, "v1"))["state"] == "idle"

    await until(idle, 30, "the endpoint did not go idle after 2 s without a request")
    state = await endpoint_state(api, names, "v1")
    assert (state["upstreams"], state["desired_replicas"], state["scaled_because"]) == (
        [],
        0,
        "idle",
    )
    if past_drain:
        # Past the drain (1 s): the replica is gone, not merely out of the route.
        await until_stopped(ran, 15, "the idle endpoint's last replica still runs")
        assert replica_records(platform, names, "v1") == []
    return ran


async def test_an_idle_endpoint_goes_to_zero_and_its_next_request_is_answered(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    async with admin_client(scaling_platform) as api:
        await idle_endpoint(api, names, scaling_platform)
        version = await api.get(
            f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/versions/v1"
        )
        assert version.json()["status"] == "ready"  # an idle version still serves
        url = (
            f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            "/v1/predict/"
        )
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            answer = await client.get(url)
            waited = time.monotonic() - started
        assert (answer.status_code, answer.text) == (200, "awake"), answer.text
        assert waited >= 1.5  # held while the replica started (its import sleeps 1.5 s)
        state = await endpoint_state(api, names, "v1")
        assert (state["state"], len(state["upstreams"])) == ("ready", 1)
        assert state["scaled_because"] == "wake"


async def test_a_full_hold_queue_answers_503_with_retry_after(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    async with admin_client(scaling_platform) as api:
        await idle_endpoint(api, names, scaling_platform)
        url = (
            f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            "/v1/predict/"
        )

        async def call() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:  # a connection each
                return await client.get(url)

        # 2 router workers hold 4 each: of 24 at once, at least 16 find the queue full.
        answers = await asyncio.gather(*(call() for _ in range(24)))
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503}, statuses
    assert statuses[503] >= 16 and statuses[200] >= 1, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["type"].endswith("/hold-queue-full"), answer.text
        else:
            assert answer.text == "awake"


async def test_a_request_during_the_last_replica_s_drain_wakes_a_new_one_that_keeps_serving(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    async with admin_client(scaling_platform) as api:
        [retiring] = await idle_endpoint(api, names, scaling_platform, past_drain=False)
        url = (
            f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            "/v1/predict/"
        )
        async with httpx.AsyncClient(timeout=30) as client:
            first = await client.get(url)  # the retiring replica is still up: a new one starts
            assert (first.status_code, first.text) == (200, "awake"), first.text

            async def woken() -> bool:
                state = await endpoint_state(api, names, "v1")
                return state["state"] == "ready" and len(state["upstreams"]) == 1

            await until(woken, 20, "no replica ready after a wake during the drain")
            await until_stopped([retiring], 15, "the retired replica still runs")
            later = [await client.get(url) for _ in range(20)]
        assert [(a.status_code, a.text) for a in later] == [(200, "awake")] * 20


async def test_a_held_request_whose_client_leaves_lets_the_endpoint_idle_again(
    scaling_platform: RunningPlatform, names: Names
) -> None:
    # Cancelled while held, the request stayed "in flight" in the router's feed for ever:
    # the endpoint never idled again.
    async with admin_client(scaling_platform) as api:
        await idle_endpoint(api, names, scaling_platform)
        url = (
            f"{scaling_platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            "/v1/predict/"
        )
        async with httpx.AsyncClient(timeout=0.5) as client:
            with contextlib.suppress(httpx.TimeoutException):
                await client.get(url)  # held while the replica starts (1.5 s): it leaves

        async def woken() -> bool:
            state = await endpoint_state(api, names, "v1")
            return state["state"] == "ready" and len(state["upstreams"]) == 1

        await until(woken, 20, "the held request did not wake the endpoint")

        async def idle_again() -> bool:
            return (await endpoint_state(api, names, "v1"))["state"] == "idle"

        await until(idle_again, 20, "the endpoint stayed awake after its only client left")
