"""The router's request metrics feed and its ``/metrics``, with several worker processes.

A real router (two workers) on a state of record of the test's own, in front of a real
replica: every call made on a new connection lands on whichever worker the kernel picks, so
a burst reaches both. The feed is read from the traffic stream as the autoscaler reads it,
and ``/metrics`` must count what both workers served, whichever worker answers the scrape.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg

from dockyard_common import EndpointState, WorkloadState
from dockyard_common.subjects import TRAFFIC_STREAM, TRAFFIC_SUBJECT_PREFIX
from dockyard_common.traffic import DeploymentTraffic
from tests.harness.fixtures import Names
from tests.harness.infrastructure import Infrastructure
from tests.harness.router import (
    PrivateRecord,
    private_record,
    record_endpoint,
    replica,
    start_router,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "traffic-test-admin"  # noqa: S105 - a test's own router
BURST = 60


@pytest.fixture
async def record(tmp_path: Path) -> AsyncIterator[PrivateRecord]:
    async with private_record(tmp_path / "nats") as held:
        yield held


async def test_a_burst_shows_in_the_feed_and_metrics_add_up_every_worker(
    infrastructure: Infrastructure, record: PrivateRecord, names: Names, tmp_path: Path
) -> None:
    heard: list[DeploymentTraffic] = []

    async def on_traffic(msg: Msg) -> None:
        heard.append(DeploymentTraffic.model_validate(json.loads(msg.data)["data"]))

    # Read from the stream, as any subscriber of the feed would.
    subscription = await record.js.subscribe(
        f"{TRAFFIC_SUBJECT_PREFIX}.{names.owner}.{names.project}.{names.deployment}",
        stream=TRAFFIC_STREAM,
        cb=on_traffic,
        ordered_consumer=True,
    )
    env = {
        "DOCKYARD_NATS_URL": record.url,
        "DOCKYARD_REDIS_URL": infrastructure.redis_url,
        "DOCKYARD_ROUTER_WORKERS": "2",
        "DOCKYARD_REGION": "eu",
        "DOCKYARD_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with replica(tmp_path, "a") as upstream, start_router(env, tmp_path / "r.log") as router:
        await record_endpoint(
            record.js,
            names,
            EndpointState(
                owner=names.owner,
                project=names.project,
                deployment=names.deployment,
                version="v1",
                endpoint="predict",
                target="local-eu",
                region="eu",
                state=WorkloadState.READY,
                upstreams=[upstream],
            ),
        )
        await router.until_serving()
        url = f"{router.url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/x"
        # Both workers must have the route before the burst counts: a warm-up per worker.
        deadline = time.monotonic() + 20
        warm = 0
        while True:
            async with httpx.AsyncClient() as client:  # a new connection each time
                answers = await asyncio.gather(*(client.get(url) for _ in range(8)))
            # Only answers from an upstream are counted (an unrouted 503 is not traffic).
            warm += sum(answer.status_code == 200 for answer in answers)
            if all(answer.status_code == 200 for answer in answers):
                break
            assert time.monotonic() < deadline, [a.status_code for a in answers]
            await asyncio.sleep(0.2)

        async def call() -> int:
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code

        assert [await asyncio.gather(*(call() for _ in range(BURST)))] == [[200] * BURST]
        total = warm + BURST

        def served() -> int:
            return sum(e.requests for t in heard for e in t.endpoints)

        deadline = time.monotonic() + 10
        while served() < total:
            assert time.monotonic() < deadline, f"feed counted {served()} of {total}"
            await asyncio.sleep(0.1)
        assert served() == total
        entries = [e for t in heard for e in t.endpoints]
        assert {(e.version, e.endpoint, e.region) for e in entries} == {("v1", "predict", "eu")}
        assert sum(sum(e.latency_ms) for e in entries) == total
        assert all(t.window_s > 0.5 for t in heard)
        routers = {t.router for t in heard}
        assert len(routers) == 2, routers  # both workers served, and publish

        # Every scrape, whichever worker answers it, counts both workers' requests.
        pattern = f'deployment="{names.owner}/{names.project}/{names.deployment}"'
        for _ in range(6):
            async with httpx.AsyncClient() as client:
                page = await client.get(
                    f"{router.url}/metrics",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
            assert page.status_code == 200, page.text
            counted = sum(
                float(line.rpartition(" ")[2])
                for line in page.text.splitlines()
                if line.startswith("dockyard_router_requests_total{") and pattern in line
            )
            assert counted == total, page.text
    await subscription.unsubscribe()
