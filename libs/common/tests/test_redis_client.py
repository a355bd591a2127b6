"""The Redis helper fails at once instead of retrying behind the caller's back."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from dockyard_common.runtime import connect_redis
from dockyard_platform.servers import free_port


async def test_a_real_redis_answers(redis_client: Redis) -> None:
    await redis_client.set("dockyard:test:ping", "pong")
    assert await redis_client.get("dockyard:test:ping") == "pong"


async def test_a_closed_port_fails_within_a_second_not_after_retries() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await client.ping()
    assert time.monotonic() - started < 1.0
    await client.aclose()
