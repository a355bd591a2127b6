"""The router's ops API and metrics: resolve a path; a region drained through the API moves
traffic with no failed request."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import deploy_ready, put_deployment

pytestmark = pytest.mark.e2e


async def test_draining_a_region_moves_traffic_without_a_failed_request(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu", "local-us"])
    await deploy_ready(api, names, "v1")
    path = f"/{names.owner}/{names.project}/{names.deployment}/v1/predict/x"
    admin = {"Authorization": f"Bearer {platform.admin_token}"}

    async with httpx.AsyncClient(base_url=platform.router_url, timeout=10) as router:
        assert (await router.get("/_ops/regions")).status_code == 401
        resolved = (await router.get("/_ops/resolve", params={"path": path}, headers=admin)).json()
        assert resolved["version"] == "v1"
        assert [u["region"] for u in resolved["upstreams"]] == ["eu", "us"]

        regions: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                answer = await router.get(path)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                regions.append(answer.headers.get("X-Dockyard-Region", "?"))
                await asyncio.sleep(0.002)

        loader = asyncio.create_task(load())
        try:
            await asyncio.sleep(0.2)
            drained = await api.put("/v1/regions/eu", json={"drained": True})
            assert drained.status_code == 200, drained.text
            switched_at = len(regions)
            deadline = time.monotonic() + 1.0  # traffic leaves within a second
            while regions[-1] != "us":
                assert time.monotonic() < deadline, "traffic did not leave eu within 1 s"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            table = (await router.get("/_ops/regions", headers=admin)).json()["items"]
            assert {r["region"]: r["drained"] for r in table}["eu"] is True
        finally:
            await api.put("/v1/regions/eu", json={"drained": False})
            stop.set()
            await loader
        assert failures == []
        assert set(regions[:switched_at]) == {"eu"}
        after_drain = regions[switched_at:]
        assert "us" in after_drain and after_drain[-1] in ("us", "eu")

        # The router's own drain of earlier releases says where drain went.
        moved = await router.post("/_ops/regions/eu/drain", headers=admin)
        assert moved.status_code == 405
        assert moved.headers["Content-Type"] == "application/problem+json"
        assert "PUT /v1/regions/eu" in moved.json()["detail"]

        # /metrics names every owner's deployments: it answers to the admin token only.
        assert (await router.get("/metrics")).status_code == 401
        metrics = (await router.get("/metrics", headers=admin)).text
        line = next(
            line
            for line in metrics.splitlines()
            if line.startswith("dockyard_router_requests_total")
            and f'deployment="{names.owner}/{names.project}/{names.deployment}"' in line
            and 'region="us"' in line
        )
        assert float(line.rsplit(" ", 1)[1]) >= 1
