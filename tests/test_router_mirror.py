"""The Redis mirror of a router's tables, on a real Redis of the test's own.

What the writing process applies reaches Redis at its record revision (a later revision
written by another router is kept), a change applied while Redis does not answer is saved
once it does, a Redis that lost its data is written again from what the process holds,
and a starting process loads a complete mirror, never an incomplete one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from dockyard_common import AliasTarget, VersionStatus, WorkloadState
from dockyard_common.runtime.redis_client import connect_redis
from dockyard_platform.servers import ServerProcess, start_redis
from dockyard_router.feeds import FEEDS, Mirror
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.mirror import COMPLETE
from dockyard_router.feeds.regions import REGIONS
from dockyard_router.feeds.versions import VERSIONS
from dockyard_router.routed import RoutedAlias, RoutedEndpoint, RoutedRegion, RoutedVersion
from dockyard_router.tables import RouteTable
from tests.harness.fixtures import Names

KEY = "production"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A Redis of the test's own: the session's is the session platform's router's mirror."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: ServerProcess) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


def _alias(names: Names, version: str) -> RoutedAlias:
    return RoutedAlias(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        name=KEY,
        target=AliasTarget(version=version),
    )


def _version(names: Names, name: str, upstream: str) -> RoutedVersion:
    return RoutedVersion(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        name=name,
        status=VersionStatus.READY,
        endpoint_states=[
            RoutedEndpoint(
                endpoint="predict",
                target="local-eu",
                region="eu",
                state=WorkloadState.READY,
                upstreams=[upstream],
            )
        ],
    )


class Writer:
    """A table, and the mirror its process writes, as the feeds drive them."""

    def __init__(self, redis: Redis) -> None:
        self.table = RouteTable(loaded=False)  # until the test says the feeds caught up
        self.mirror = Mirror(redis, self.table, FEEDS, writes=True)

    def alias(self, alias: RoutedAlias, revision: int) -> bool:
        if not self.table.put_alias(alias.table_key, revision, alias):
            return False
        self.mirror.changed(ALIASES, alias.table_key, revision, alias)
        return True

    def version(self, version: RoutedVersion, revision: int) -> None:
        assert self.table.put_version(version.table_key, revision, version)
        self.mirror.changed(VERSIONS, version.table_key, revision, version)

    def region(self, name: str, revision: int, *, drained: bool) -> None:
        region = RoutedRegion(name=name, drained=drained)
        assert self.table.put_region(name, revision, region)
        self.mirror.changed(REGIONS, name, revision, region)


@contextlib.asynccontextmanager
async def _writing(redis: Redis, *, every_s: float = 1.0) -> AsyncIterator[Writer]:
    writer = Writer(redis)
    task = asyncio.create_task(writer.mirror.keep_written(every_s=every_s, retry_after_s=0.2))
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _held(redis: Redis, hash_name: str, key: str) -> tuple[str | None, int]:
    raw = await redis.hget(hash_name, key)
    revision = int(await redis.hget(f"{hash_name}:revisions", key) or 0)
    return raw, revision


async def _alias_held(redis: Redis, key: str) -> tuple[str | None, int]:
    raw, revision = await _held(redis, ALIASES.mirror_hash, key)
    version = RoutedAlias.model_validate_json(raw).target.version if raw else None
    return version, revision


async def _until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {within_s} s"
        await asyncio.sleep(0.02)


async def test_each_applied_entry_reaches_redis_at_its_revision(redis: Redis, names: Names) -> None:
    key = _alias(names, "v1").table_key
    async with _writing(redis) as writer:
        assert writer.alias(_alias(names, "v1"), 3)
        await _until(lambda: _is(redis, key, ("v1", 3)), "v1 at 3")
        assert not await redis.exists(COMPLETE)  # not whole before the feeds caught up
        assert writer.alias(_alias(names, "v2"), 7)
        writer.version(_version(names, "v2", "http://127.0.1.1:9"), 8)
        writer.region("eu", 9, drained=True)
        await _until(lambda: _is(redis, key, ("v2", 7)), "v2 at 7")
        # An older change is refused by the table before it could be queued.
        assert not writer.alias(_alias(names, "v1"), 5)
        version = _version(names, "v2", "").table_key
        await _until(
            lambda: _revision_is(redis, VERSIONS.mirror_hash, version, 8), "the version at 8"
        )
        await _until(lambda: _revision_is(redis, REGIONS.mirror_hash, "eu", 9), "the region")
    assert await _alias_held(redis, key) == ("v2", 7)
    raw, _ = await _held(redis, REGIONS.mirror_hash, "eu")
    assert raw is not None and RoutedRegion.model_validate_json(raw).drained


async def test_a_later_revision_in_redis_is_not_overwritten(redis: Redis, names: Names) -> None:
    """Another router sharing this Redis got there first."""
    key = _alias(names, "v1").table_key
    await redis.hset(ALIASES.mirror_hash, key, _alias(names, "v9").model_dump_json())
    await redis.hset(f"{ALIASES.mirror_hash}:revisions", key, "10")
    other = Names(owner=names.owner, project=names.project, deployment="other")
    other_key = _alias(other, "v1").table_key
    async with _writing(redis) as writer:
        assert writer.alias(_alias(names, "v1"), 5)
        assert writer.alias(_alias(other, "v1"), 6)
        # Written in one batch: once the second is there, the first was tried.
        await _until(lambda: _is(redis, other_key, ("v1", 6)), "the other alias")
    assert await _alias_held(redis, key) == ("v9", 10)


async def test_a_change_applied_while_redis_is_away_is_saved_once_it_answers(
    redis_server: ServerProcess, redis: Redis, names: Names
) -> None:
    key = _alias(names, "v1").table_key
    async with _writing(redis) as writer:
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # holds connections, answers nothing
        try:
            assert writer.alias(_alias(names, "v1"), 3)
            await asyncio.sleep(0.4)
            assert writer.alias(_alias(names, "v2"), 4)
            # Redis stays away past the client's 0.5 s timeout: the write fails, and is
            # tried again (every 0.2 s here) until Redis answers.
            await asyncio.sleep(1.0)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        await _until(lambda: _is(redis, key, ("v2", 4)), "v2 at 4")


async def test_a_mirror_that_lost_its_data_is_written_again_from_what_the_process_holds(
    redis: Redis, names: Names
) -> None:
    async with _writing(redis, every_s=0.1) as writer:
        writer.version(_version(names, "v1", "http://127.0.1.1:9"), 4)
        assert writer.alias(_alias(names, "v1"), 5)
        writer.region("eu", 6, drained=True)
        writer.table.loaded = True  # the feeds caught up
        await _until(lambda: _exists(redis, COMPLETE), "the mirror marked complete")
        await redis.flushall()  # as a restart without persistence leaves it
        await _until(lambda: _exists(redis, COMPLETE), "the mirror written again")
    assert await _alias_held(redis, _alias(names, "v1").table_key) == ("v1", 5)
    raw, revision = await _held(redis, REGIONS.mirror_hash, "eu")
    assert raw is not None and RoutedRegion.model_validate_json(raw).drained and revision == 6
    assert await redis.hlen(VERSIONS.mirror_hash) == 1


async def test_what_the_record_no_longer_holds_leaves_the_mirror_once_caught_up(
    redis: Redis, names: Names
) -> None:
    gone = _version(names, "v0", "http://127.0.1.1:8")
    # Left by a writer that stopped before the version was deleted from the record.
    await redis.hset(VERSIONS.mirror_hash, gone.table_key, gone.model_dump_json())
    await redis.hset(f"{VERSIONS.mirror_hash}:revisions", gone.table_key, "2")
    async with _writing(redis) as writer:
        writer.version(_version(names, "v1", "http://127.0.1.1:9"), 4)
        writer.table.loaded = True
        writer.mirror.caught_up({"versions": 7, "aliases": 0, "regions": 0})
        await _until(lambda: _exists(redis, COMPLETE), "the mirror marked complete")
    fields = await redis.hkeys(VERSIONS.mirror_hash)
    assert fields == [_version(names, "v1", "").table_key]


async def test_a_starting_process_loads_a_complete_mirror_only(redis: Redis, names: Names) -> None:
    async with _writing(redis, every_s=0.1) as writer:
        writer.version(_version(names, "v1", "http://127.0.1.1:9"), 4)
        assert writer.alias(_alias(names, "v1"), 5)
        writer.region("eu", 6, drained=True)
        await _until(lambda: _revision_is(redis, REGIONS.mirror_hash, "eu", 6), "the region")
        starting = RouteTable(loaded=False)
        assert not await Mirror(redis, starting, FEEDS, writes=False).load()
        assert not starting.loaded and starting.aliases == {}
        writer.table.loaded = True
        await _until(lambda: _exists(redis, COMPLETE), "the mirror marked complete")
    assert await Mirror(redis, starting, FEEDS, writes=False).load()
    assert starting.loaded and starting.drained == {"eu"}
    path = f"/{names.owner}/{names.project}/{names.deployment}/{KEY}/predict/"
    resolved = starting.resolve(path, "eu", 0.0)
    assert resolved is not None and resolved.version == "v1"
    assert starting.alias_revisions[_alias(names, "v1").table_key] == 5


async def _is(redis: Redis, key: str, expected: tuple[str, int]) -> bool:
    return await _alias_held(redis, key) == expected


async def _revision_is(redis: Redis, hash_name: str, key: str, revision: int) -> bool:
    return (await _held(redis, hash_name, key))[1] == revision


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))
