"""Autoscaling on request load, on the embedded default: real router, scheduler and endpoint
processes, bounded load from the test.

A platform of the module's own (its own NATS), with the autoscaler's windows shortened
(stable 6 s, panic 2 s) so that a test takes seconds, not minutes; the rule is the same.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

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
}


@pytest.fixture(scope="module")
def scaling_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    platform = start_platform_process(tmp_path_factory.mktemp("autoscale"), AUTOSCALE)
    yield platform
    platform.stop()


async def deploy(
    api: httpx.AsyncClient, names: Names, version: str, replicas: dict[str, Any]
) -> None:
    code = await upload_blob(api, names, tar_gz({"app.py": SLOW_APP}))
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


async def serving(api: httpx.AsyncClient, names: Names, version: str) -> tuple[int, int | None]:
    """(replicas serving, replicas the autoscaler wants) of predict on local-eu."""
    url = (
        f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}"
        f"/versions/{version}"
    )
    [state] = [s for s in (await api.get(url)).json()["endpoint_states"]]
    return len(state["upstreams"]), state.get("desired_replicas")


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
        heavy_outcomes = await heavy.stop()

        async def fallen() -> bool:
            return await serving(api, names, "v1") == (1, 1)

        await until(fallen, 40, f"replicas did not fall back to 1 (peak {peak})")
        await asyncio.sleep(3)  # past the drain and the stop of the replicas removed
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
