"""Redis is a derived mirror: lost, the router keeps routing, then writes it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from dockyard_common.runtime import connect_redis
from dockyard_common.subjects import alias_table_key
from dockyard_platform.servers import ServerProcess, free_port, start_redis
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.mirror import COMPLETE
from dockyard_router.feeds.versions import VERSIONS
from dockyard_router.routed import RoutedAlias
from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    deploy_ready,
    put_deployment,
    upload_blob,
    wait_for_version,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, list[ServerProcess]]]:
    port = free_port()
    servers = [start_redis(tmp_path / "redis", port=port)]
    yield port, servers
    for server in servers:
        server.stop()


async def test_requests_keep_flowing_while_redis_is_lost_and_tables_come_back(
    tmp_path: Path,
    names: Names,
    own_redis: tuple[int, list[ServerProcess]],
) -> None:
    port, servers = own_redis
    # A platform of its own, NATS included: two platforms on one NATS would share (and
    # split between them) the services' durable consumers.
    platform: RunningPlatform = start_platform_process(
        tmp_path / "platform",
        {"DOCKYARD_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
    )
    try:
        async with admin_client(platform) as api:
            await put_deployment(api, names, ["local-eu"])
            await deploy_ready(api, names, "v1")
            aliases = (
                f"/v1/projects/{names.owner}/{names.project}/deployments/"
                f"{names.deployment}/aliases/production"
            )
            assert (await api.put(aliases, json={"version": "v1"})).status_code == 200

            base = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            urls = [f"{base}/v1/predict/x", f"{base}/production/predict/x"]
            failures: list[str] = []
            served = 0
            stop = asyncio.Event()

            async def load(client: httpx.AsyncClient) -> None:
                nonlocal served
                while not stop.is_set():
                    for url in urls:
                        response = await client.get(url)
                        if response.status_code == 200:
                            served += 1
                        else:
                            failures.append(f"{url}: {response.status_code} {response.text}")
                    await asyncio.sleep(0.005)

            async with httpx.AsyncClient(timeout=10) as client:
                await _eventually(lambda: client.get(urls[1]))  # the alias is live
                loader = asyncio.create_task(load(client))
                await asyncio.sleep(0.3)
                servers[0].stop()  # Redis gone, its data with it
                await asyncio.sleep(1.0)
                servers.append(start_redis(tmp_path / "redis-again", port=port))
                redis: Redis = connect_redis(f"redis://127.0.0.1:{port}/0")
                try:
                    deadline = time.monotonic() + 10
                    while not await redis.exists(COMPLETE):
                        assert time.monotonic() < deadline, "the mirror was not written in 10 s"
                        await asyncio.sleep(0.05)
                    assert await redis.hlen(VERSIONS.mirror_hash) >= 1
                    assert await redis.hlen(ALIASES.mirror_hash) >= 1
                finally:
                    await redis.aclose()
                await asyncio.sleep(0.3)
                stop.set()
                await loader
            assert failures == []
            assert served > 50

            # A switch made now reaches the router, and the mirror.
            code_v2 = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP + b"\n# v2\n"}))
            created = await create_version(
                api,
                names,
                {
                    "name": "v2",
                    "code": {"blob": code_v2},
                    "endpoints": [{"name": "predict", "wsgi": "app:app"}],
                },
            )
            assert created.status_code == 201
            await wait_for_version(api, names, "v2", "ready")
            assert (await api.put(aliases, json={"version": "v2"})).status_code == 200
            async with httpx.AsyncClient(timeout=10) as client:
                deadline = time.monotonic() + 5
                while True:
                    answer = await client.get(urls[1])
                    if answer.headers.get("X-Dockyard-Version") == "v2":
                        break
                    assert time.monotonic() < deadline, "the switch never reached the router"
                    await asyncio.sleep(0.02)
            # The mirror follows the switch too: it is what a router starting without NATS loads.
            redis = connect_redis(f"redis://127.0.0.1:{port}/0")
            field = alias_table_key(names.owner, names.project, names.deployment, "production")
            try:
                deadline = time.monotonic() + 5
                while True:
                    raw = await redis.hget(ALIASES.mirror_hash, field)
                    if raw and RoutedAlias.model_validate_json(raw).target.version == "v2":
                        break
                    assert time.monotonic() < deadline, "the mirror missed the switch"
                    await asyncio.sleep(0.02)
            finally:
                await redis.aclose()
    finally:
        platform.stop()


async def _eventually(call: object, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        response = await call()  # type: ignore[operator]
        if response.status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never answered 200 within {within_s} s")
