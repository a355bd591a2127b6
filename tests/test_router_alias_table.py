"""Redis's alias table follows what the saving router process applies from its alias watch.

On a real Redis: the write that reaches it, the revision guard another writer relies on,
and a change applied while Redis does not answer, saved once it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis

from dockyard_common import Alias, AliasTarget
from dockyard_common.runtime.redis_client import connect_redis
from dockyard_platform.servers import start_redis
from dockyard_router.store import ALIAS_REVISIONS_HASH, ALIASES_HASH, RouteStore
from dockyard_router.tables import RouteTable, alias_table_key
from tests.harness.fixtures import Names


def _alias(names: Names, version: str) -> Alias:
    return Alias(
        owner=names.owner,
        project=names.project,
        deployment=names.deployment,
        name="production",
        target=AliasTarget(version=version),
    )


async def _no_record() -> RouteTable:
    raise AssertionError("these tests never rebuild from the record")


@contextlib.asynccontextmanager
async def _saving(redis: Redis, *, retry_after_s: float = 1.0) -> AsyncIterator[RouteStore]:
    store = RouteStore(redis, RouteTable(), _no_record, saves_aliases=True)
    saver = asyncio.create_task(store.save_aliases(retry_after_s=retry_after_s))
    try:
        yield store
    finally:
        saver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver


async def _held(redis: Redis, key: str) -> tuple[str | None, int]:
    raw = await redis.hget(ALIASES_HASH, key)
    version = Alias.model_validate_json(raw).target.version if raw else None
    return version, int(await redis.hget(ALIAS_REVISIONS_HASH, key) or 0)


async def _until(check: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.02)


async def test_each_applied_alias_reaches_redis_at_its_revision(
    redis_client: Redis, names: Names
) -> None:
    key = alias_table_key(_alias(names, "v1"))
    async with _saving(redis_client) as store:
        assert store.apply_alias(_alias(names, "v1"), 3)
        await _until(lambda: _is(redis_client, key, ("v1", 3)))
        assert store.apply_alias(_alias(names, "v2"), 7)
        await _until(lambda: _is(redis_client, key, ("v2", 7)))
        # An older change is refused by the table before it could be queued.
        assert not store.apply_alias(_alias(names, "v1"), 5)
    assert await _held(redis_client, key) == ("v2", 7)


async def test_a_later_revision_in_redis_is_not_overwritten(
    redis_client: Redis, names: Names
) -> None:
    """Another router sharing this Redis (or a rebuild from the record) got there first."""
    key = alias_table_key(_alias(names, "v1"))
    await redis_client.hset(ALIASES_HASH, key, _alias(names, "v9").model_dump_json())
    await redis_client.hset(ALIAS_REVISIONS_HASH, key, "10")
    other = Names(owner=names.owner, project=names.project, deployment="other")
    other_key = alias_table_key(_alias(other, "v1"))
    async with _saving(redis_client) as store:
        assert store.apply_alias(_alias(names, "v1"), 5)
        assert store.apply_alias(_alias(other, "v1"), 6)
        # Saved in the order applied: once the second is there, the first was tried.
        await _until(lambda: _is(redis_client, other_key, ("v1", 6)))
    assert await _held(redis_client, key) == ("v9", 10)


async def test_a_change_applied_while_redis_is_away_is_saved_once_it_answers(
    tmp_path: Path, names: Names
) -> None:
    server = start_redis(tmp_path / "redis")
    redis = connect_redis(server.url)
    key = alias_table_key(_alias(names, "v1"))
    try:
        async with _saving(redis, retry_after_s=0.2) as store:
            os.kill(server.process.pid, signal.SIGSTOP)  # holds connections, answers nothing
            try:
                assert store.apply_alias(_alias(names, "v1"), 3)
                await asyncio.sleep(0.4)
                assert store.apply_alias(_alias(names, "v2"), 4)
                # Redis stays away past the client's 0.5 s timeout: the save fails, and is
                # tried again (every 0.2 s here) until Redis answers.
                await asyncio.sleep(1.0)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            await _until(lambda: _is(redis, key, ("v2", 4)))
    finally:
        await redis.aclose()
        server.stop()


async def _is(redis: Redis, key: str, expected: tuple[str, int]) -> bool:
    return await _held(redis, key) == expected
