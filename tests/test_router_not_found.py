"""A path that serves nothing is answered with which part of it is wrong, by a running router.

The router learns what does not serve (a stopped version, an endpoint's name) from the same
source as what does: the versions it follows in the state of record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from dockyard_common import VersionStatus, WorkloadState
from dockyard_platform.servers import start_redis
from tests.harness.fixtures import Names
from tests.harness.router import (
    private_record,
    record_alias,
    record_version,
    replica,
    start_router,
)

pytestmark = pytest.mark.e2e


async def test_a_path_that_serves_nothing_says_which_part_is_wrong(
    tmp_path: Path, names: Names
) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        async with private_record(tmp_path / "nats") as record:
            with replica(tmp_path, "one") as one:
                await record_version(
                    record.js, names, "v1", [one], endpoints=("predict", "explain")
                )
                await record_version(record.js, names, "v0", [], state=WorkloadState.STOPPED)
                await record_alias(record.js, names, "production", "v1")
                env = {"DOCKYARD_NATS_URL": record.url, "DOCKYARD_REDIS_URL": redis.url}
                with start_router(env, tmp_path / "router.log") as router:
                    await router.until_serving()
                    deployment = f"{names.owner}/{names.project}/{names.deployment}"
                    async with httpx.AsyncClient(base_url=router.url, timeout=10) as client:

                        async def why(path: str) -> tuple[int, str, str]:
                            answer = await client.get(path)
                            assert answer.headers["Content-Type"] == "application/problem+json"
                            problem = answer.json()
                            slug = problem["type"].rsplit("/", 1)[1]
                            return answer.status_code, slug, problem["detail"]

                        assert (await client.get(f"/{deployment}/v1/predict/")).text == "one"
                        assert await why(f"/{deployment}/v1/predcit/") == (
                            404,
                            "unknown-endpoint",
                            f"version v1 of {deployment} has no endpoint predcit "
                            "(its endpoints: explain, predict)",
                        )
                        assert await why(f"/{deployment}/prodution/predict/") == (
                            404,
                            "unknown-version",
                            f"deployment {deployment} has no version or alias named prodution",
                        )
                        wrong = f"{names.owner}/{names.project}/wbe"
                        assert (await why(f"/{wrong}/v1/predict/"))[:2] == (
                            404,
                            "unknown-deployment",
                        )
                        assert await why(f"/{deployment}/v0/predict/") == (
                            410,
                            "version-stopped",
                            f"version v0 of {deployment} was stopped and serves no more",
                        )

                        # A version stopped before it ever ran anywhere is stopped too.
                        await record_version(
                            record.js, names, "v9", [], states=[], status=VersionStatus.STOPPED
                        )
                        v9 = f"/{deployment}/v9/predict/"
                        deadline = time.monotonic() + 10
                        while (seen := await client.get(v9)).status_code != 410:
                            assert time.monotonic() < deadline, f"v9 still answers {seen.text}"
                            await asyncio.sleep(0.05)

                        # v1 stops: its record says so once the scheduler reported.
                        await record_version(
                            record.js,
                            names,
                            "v1",
                            [],
                            state=WorkloadState.STOPPED,
                            endpoints=("predict", "explain"),
                        )
                        deadline = time.monotonic() + 10
                        v1 = f"/{deployment}/v1/predict/"
                        while (seen := await client.get(v1)).status_code != 410:
                            assert time.monotonic() < deadline, f"v1 still answers {seen.text}"
                            await asyncio.sleep(0.05)
                        assert await why(v1) == (
                            410,
                            "version-stopped",
                            f"version v1 of {deployment} was stopped and serves no more",
                        )
                        assert await why(f"/{deployment}/production/predict/") == (
                            503,
                            "version-stopped",
                            f"alias production of {deployment} points to version v1, "
                            "which was stopped",
                        )
    finally:
        redis.stop()
