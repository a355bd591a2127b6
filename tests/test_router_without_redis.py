"""A router worker that starts while Redis is away serves from the state of record, and
Redis's mirror comes back whole once Redis does.

Real processes: a router with two workers, a NATS of the test's own holding the record, a
Redis of the test's own that the test stops and starts, replicas answering their names.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockyard_common.runtime import connect_redis
from dockyard_common.subjects import alias_table_key
from dockyard_platform.servers import ServerProcess, free_port, start_redis
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.versions import VERSIONS
from dockyard_router.routed import RoutedAlias
from tests.harness.fixtures import Names
from tests.harness.procs import alive
from tests.harness.router import (
    listen_for_routers,
    private_record,
    record_alias,
    record_version,
    replica,
    start_router,
    workers_of,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def outcomes(urls: list[str], rounds: int) -> Counter[str]:
    """``rounds`` GETs of each URL, each on a new connection (new connections spread over
    the workers sharing the port): how many got each ``status body``."""
    seen: Counter[str] = Counter()
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        for _ in range(rounds):
            for url in urls:
                answer = await client.get(url)
                seen[f"{answer.status_code} {answer.text}"] += 1
    return seen


@pytest.fixture
def redis_servers() -> Iterator[list[ServerProcess]]:
    """Redis servers the test starts (on one port, one after the other); all stopped after."""
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.stop()


async def test_a_worker_restarted_while_redis_is_down_serves_from_the_record(
    tmp_path: Path, names: Names, redis_servers: list[ServerProcess]
) -> None:
    redis_port = free_port()
    redis_servers.append(start_redis(tmp_path / "redis", port=redis_port))
    async with private_record(tmp_path / "nats") as record:
        with replica(tmp_path, "one") as one, replica(tmp_path, "two") as two:
            await record_version(record.js, names, "v1", [one])
            await record_version(record.js, names, "v2", [two])
            await record_alias(record.js, names, "production", "v1")
            heard = await listen_for_routers(record.client)
            env = {
                "DOCKYARD_NATS_URL": record.url,
                "DOCKYARD_REDIS_URL": redis_servers[0].url,
                "DOCKYARD_ROUTER_WORKERS": "2",
            }
            with start_router(env, tmp_path / "router.log") as router:
                await router.until_serving()
                first, _ = await workers_of(router.process.pid, heard, 2, within_s=30)
                base = f"{router.url}/{names.owner}/{names.project}/{names.deployment}"
                urls = [f"{base}/v1/predict/", f"{base}/production/predict/"]
                assert await outcomes(urls, 5) == {"200 one": 10}

                redis_servers[0].stop()  # away, and its data with it
                os.kill(first, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while alive(first):
                    assert time.monotonic() < deadline, f"worker {first} outlived SIGKILL"
                    await asyncio.sleep(0.02)
                # The parent starts it again, now without Redis; it beats once it serves.
                restarted = await workers_of(router.process.pid, heard, 2, within_s=30)
                assert first not in restarted
                # About half of the new connections land on the restarted worker.
                assert await outcomes(urls, 50) == {"200 one": 100}, router.log()

                # A switch while Redis is away reaches both workers, from the alias record.
                await record_alias(record.js, names, "production", "v2")
                deadline = time.monotonic() + 10
                while (seen := await outcomes(urls[1:], 10)) != {"200 two": 10}:
                    assert time.monotonic() < deadline, f"the switch did not land: {seen}"
                assert await outcomes(urls, 20) == {"200 one": 20, "200 two": 20}

                # Redis back, empty: the mirror is written again from what the router holds,
                # the switch in it, and requests go on being served.
                redis_servers.append(start_redis(tmp_path / "redis-again", port=redis_port))
                client = connect_redis(redis_servers[-1].url)
                field = alias_table_key(names.owner, names.project, names.deployment, "production")
                try:
                    deadline = time.monotonic() + 10
                    while True:
                        raw = await client.hget(ALIASES.mirror_hash, field)
                        versions = await client.hlen(VERSIONS.mirror_hash)
                        switched = (
                            raw and RoutedAlias.model_validate_json(raw).target.version == "v2"
                        )
                        if switched and versions == 2:
                            break
                        assert time.monotonic() < deadline, (
                            f"Redis holds {raw!r}, {versions} versions"
                        )
                        await asyncio.sleep(0.05)
                finally:
                    await client.aclose()
                assert await outcomes(urls, 20) == {"200 one": 20, "200 two": 20}
