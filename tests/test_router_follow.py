"""The router's follower of Redis's route channel ends when cancelled, at any moment.

redis-py (8.1) swallows a cancellation that lands while a pub/sub connection subscribes; a
follower cancelled then used to wait forever, and with it a router stopping at that moment.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from dockyard_router.store import RouteStore
from dockyard_router.tables import RouteTable

pytestmark = pytest.mark.e2e


async def no_source() -> RouteTable:
    return RouteTable()


@pytest.mark.parametrize("after_s", [0.0005, 0.001, 0.002, 0.01])
async def test_a_cancelled_follower_ends(redis_client: Redis, after_s: float) -> None:
    store = RouteStore(redis_client, RouteTable(), no_source)
    for _ in range(10):
        follower = asyncio.create_task(store.follow())
        await asyncio.sleep(after_s)
        follower.cancel()
        done, _ = await asyncio.wait({follower}, timeout=3)
        assert done, f"the follower still runs 3 s after being cancelled {after_s} s in"
        assert follower.cancelled()
