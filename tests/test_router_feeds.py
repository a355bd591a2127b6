"""A router's inputs are the state of record: it acts on what the record holds, in the
record's order, keeps a drain through a Redis restart, and starts while NATS is away.

Real processes: routers, a NATS of the test's own holding the record (written as the API
writes it), Redis servers of the test's own, replicas answering their names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from dockyard_common import EventType, VersionStatus, WorkloadState
from dockyard_common.runtime import EventPublisher, connect_redis
from dockyard_common.subjects import EVENTS_STREAM, event_type_filter
from dockyard_platform.servers import ServerProcess, free_port, start_redis
from dockyard_router.feeds.mirror import COMPLETE
from dockyard_router.feeds.record import LEGACY_CONSUMER
from tests.harness.fixtures import Names
from tests.harness.router import (
    endpoint_states,
    private_record,
    record_alias,
    record_region,
    record_version,
    replica,
    start_router,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_TOKEN = "feeds-test-admin"  # noqa: S105 - a test's own router


@pytest.fixture
def redis_servers() -> Iterator[list[ServerProcess]]:
    """Redis servers the test starts (one port, one after the other); all stopped after."""
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.stop()


async def until_answer(
    client: httpx.AsyncClient, url: str, expected: str, within_s: float = 10.0
) -> None:
    """GET ``url`` on new connections until it answers ``expected`` (``status body``)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = await client.get(url, headers={"Connection": "close"})
        seen = f"{answer.status_code} {answer.text}"
        if seen == expected:
            return
        assert time.monotonic() < deadline, f"{url}: {seen!r}, not {expected!r}"
        await asyncio.sleep(0.02)


async def test_a_readiness_the_record_does_not_hold_is_never_routed(
    tmp_path: Path, names: Names, redis_servers: list[ServerProcess]
) -> None:
    redis_servers.append(start_redis(tmp_path / "redis"))
    async with private_record(tmp_path / "nats") as record:
        with replica(tmp_path, "one") as one, replica(tmp_path, "forged") as forged:
            await record_version(record.js, names, "v1", [one])
            await record_version(record.js, names, "v2", [], state=WorkloadState.DEPLOYING)
            env = {"DOCKYARD_NATS_URL": record.url, "DOCKYARD_REDIS_URL": redis_servers[0].url}
            with start_router(env, tmp_path / "router.log") as router:
                await router.until_serving()
                base = f"{router.url}/{names.owner}/{names.project}/{names.deployment}"
                async with httpx.AsyncClient(timeout=10) as client:
                    await until_answer(client, f"{base}/v1/predict/", "200 one")
                    # A fact the record does not hold (a forged endpoint.ready), and a
                    # scheduler's report no API folded in: v2 is still deploying.
                    [ready] = endpoint_states(names, "v2", [forged])
                    publisher = EventPublisher(record.js, source="test")
                    key = f"{names.owner}.{names.project}.{names.deployment}.v2"
                    for event_type in (
                        EventType.ENDPOINT_READY,
                        EventType.SCHEDULER_ENDPOINT_OBSERVED,
                    ):
                        await publisher.publish(
                            event_type, ready, resource_key=f"{key}/predict", revision=1
                        )
                    # A write the record holds after them, seen by the router: the
                    # events had every chance to arrive before it.
                    await record_alias(record.js, names, "production", "v1")
                    await until_answer(client, f"{base}/production/predict/", "200 one")
                    answer = await client.get(f"{base}/v2/predict/")
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["type"].endswith("/not-ready")
                    # The record's write does route.
                    await record_version(record.js, names, "v2", [forged])
                    await until_answer(client, f"{base}/v2/predict/", "200 forged")


async def test_routes_follow_the_record_revision_order(
    tmp_path: Path, names: Names, redis_servers: list[ServerProcess]
) -> None:
    redis_servers.append(start_redis(tmp_path / "redis"))
    async with private_record(tmp_path / "nats") as record:
        with replica(tmp_path, "one") as one, replica(tmp_path, "two") as two:
            await record_version(record.js, names, "v1", [one])
            env = {"DOCKYARD_NATS_URL": record.url, "DOCKYARD_REDIS_URL": redis_servers[0].url}
            with start_router(env, tmp_path / "router.log") as router:
                await router.until_serving()
                url = f"{router.url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
                async with httpx.AsyncClient(timeout=10) as client:
                    await until_answer(client, url, "200 one")
                    # A burst of writes of one version: the last one stored is what
                    # routes, however fast they come.
                    for upstream in [one, two] * 20:
                        await record_version(record.js, names, "v1", [upstream])
                    await record_version(record.js, names, "v1", [], state=WorkloadState.FAILED)
                    await record_version(record.js, names, "v1", [two])
                    await until_answer(client, url, "200 two")
                    for _ in range(20):
                        assert (await client.get(url)).text == "two"
            # A router started now reads each version's newest write.
            with start_router(env, tmp_path / "router-2.log") as later:
                await later.until_serving()
                async with httpx.AsyncClient(timeout=10) as client:
                    base = f"{later.url}/{names.owner}/{names.project}/{names.deployment}"
                    assert (await client.get(f"{base}/v1/predict/")).text == "two"


async def test_a_redis_restart_cannot_undrain_a_region(
    tmp_path: Path, names: Names, redis_servers: list[ServerProcess]
) -> None:
    redis_port = free_port()
    redis_servers.append(start_redis(tmp_path / "redis", port=redis_port))
    async with private_record(tmp_path / "nats") as record:
        with replica(tmp_path, "eu") as eu, replica(tmp_path, "us") as us:
            states = [
                *endpoint_states(names, "v1", [eu]),
                *endpoint_states(names, "v1", [us], target="local-us", region="us"),
            ]
            await record_version(record.js, names, "v1", [], states=states)
            await record_region(record.js, "eu", drained=True)
            env = {
                "DOCKYARD_NATS_URL": record.url,
                "DOCKYARD_REDIS_URL": redis_servers[0].url,
                "DOCKYARD_REGION": "eu",
                "DOCKYARD_ADMIN_TOKEN": ADMIN_TOKEN,
            }
            with start_router(env, tmp_path / "router.log") as router:
                await router.until_serving()
                url = f"{router.url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
                async with httpx.AsyncClient(timeout=10) as client:
                    await until_answer(client, url, "200 us")  # eu drained: us serves
                    mirror = redis_servers[0].url
                    async with _redis(mirror) as redis:
                        await _until_exists(redis, COMPLETE)
                    redis_servers[0].stop()  # and its data with it
                    redis_servers.append(start_redis(tmp_path / "redis-2", port=redis_port))
                    async with _redis(mirror) as redis:
                        await _until_exists(redis, COMPLETE)  # written again
                        drained = await redis.hget("dockyard:mirror:regions", "eu")
                        assert drained is not None and '"drained":true' in drained
                    for _ in range(20):
                        assert (await client.get(url)).text == "us"
                    # A router process that starts now has it drained too.
                    with start_router(env, tmp_path / "router-2.log") as later:
                        await later.until_serving()
                        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                        regions = await client.get(f"{later.url}/_ops/regions", headers=admin)
                        drained_now = {r["region"]: r["drained"] for r in regions.json()["items"]}
                        assert drained_now["eu"] is True, drained_now
                    # Undrained in the record: eu serves again (the router's own region).
                    await record_region(record.js, "eu", drained=False)
                    await until_answer(client, url, "200 eu")


async def test_a_router_that_starts_while_nats_is_away_serves_from_the_mirror(
    tmp_path: Path, names: Names, redis_servers: list[ServerProcess]
) -> None:
    redis_servers.append(start_redis(tmp_path / "redis"))
    redis_servers.append(start_redis(tmp_path / "redis-empty"))
    async with private_record(tmp_path / "nats") as record:
        with replica(tmp_path, "one") as one, replica(tmp_path, "two") as two:
            await record_version(record.js, names, "v1", [one])
            await record_version(record.js, names, "v2", [two])
            await record_alias(record.js, names, "production", "v1")
            # A consumer an earlier release's routers left in the event stream.
            await record.js.add_consumer(
                EVENTS_STREAM,
                ConsumerConfig(
                    durable_name=LEGACY_CONSUMER,
                    ack_policy=AckPolicy.EXPLICIT,
                    filter_subject=event_type_filter("endpoint.>"),
                ),
            )
            env = {"DOCKYARD_NATS_URL": record.url, "DOCKYARD_REDIS_URL": redis_servers[0].url}
            with start_router(env, tmp_path / "router.log") as first:
                await first.until_serving()
                async with _redis(redis_servers[0].url) as redis:
                    await _until_exists(redis, COMPLETE)
                with pytest.raises(NotFoundError):
                    await record.js.consumer_info(EVENTS_STREAM, LEGACY_CONSUMER)

            record.stop_server()
            mirrored = dict(env, DOCKYARD_REDIS_URL=redis_servers[0].url)
            empty = dict(env, DOCKYARD_REDIS_URL=redis_servers[1].url)
            with (
                start_router(mirrored, tmp_path / "router-mirror.log") as router,
                start_router(empty, tmp_path / "router-empty.log") as bare,
            ):
                await router.until_serving()
                await bare.until_serving()
                path = f"/{names.owner}/{names.project}/{names.deployment}"
                async with httpx.AsyncClient(timeout=10) as client:
                    # From the mirror: the version and the alias serve, a miss is a miss.
                    assert (await client.get(f"{router.url}{path}/v1/predict/")).text == "one"
                    assert (await client.get(f"{router.url}{path}/production/predict/")).text == (
                        "one"
                    )
                    missing = await client.get(f"{router.url}{path}/v9/predict/")
                    assert missing.status_code == 404, missing.text
                    # Neither NATS nor a mirror: nothing it cannot resolve is a 404 yet.
                    early = await client.get(f"{bare.url}{path}/v1/predict/")
                    assert early.status_code == 503, early.text
                    assert early.headers["Retry-After"] == "1"
                    assert early.json()["type"].endswith("/no-table")

                    record.start_server()
                    await until_answer(client, f"{bare.url}{path}/v1/predict/", "200 one", 30)
                    # The feeds took over from the mirror: a switch reaches the router.
                    await record_alias(record.js, names, "production", "v2")
                    for url in (router.url, bare.url):
                        await until_answer(client, f"{url}{path}/production/predict/", "200 two")
                    await record_version(
                        record.js, names, "v1", [], states=[], status=VersionStatus.STOPPED
                    )
                    gone = f"{router.url}{path}/v1/predict/"
                    deadline = time.monotonic() + 10
                    while (answer := await client.get(gone)).status_code != 410:
                        assert time.monotonic() < deadline, answer.text
                        await asyncio.sleep(0.02)


@asynccontextmanager
async def _redis(url: str) -> AsyncIterator[Redis]:
    """A Redis client for the block."""
    client = connect_redis(url)
    try:
        yield client
    finally:
        await client.aclose()


async def _until_exists(redis: Redis, key: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await redis.exists(key):
        assert time.monotonic() < deadline, f"Redis holds no {key} after {within_s} s"
        await asyncio.sleep(0.05)
