"""A task doing Redis commands ends when cancelled, at any moment, through ``cancellable``.

Python 3.11's ``asyncio.wait_for`` loses a cancellation that lands as its inner future
completes, and redis-py calls it for each command it sends with a socket timeout. A router
worker cancelled at that moment used to go on running (found when its port was taken).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from dockyard_common.runtime import cancellable, connect_redis
from tests.harness.infrastructure import Infrastructure

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("after_s", [0.0005, 0.001, 0.005])
async def test_a_loop_of_redis_commands_ends_when_cancelled(
    infrastructure: Infrastructure, after_s: float
) -> None:
    redis = connect_redis(infrastructure.redis_url)  # as the router connects: with timeouts
    key = f"cancellation-test-{secrets.token_hex(4)}"

    async def poll() -> None:
        while True:
            await redis.get(key)

    try:
        for _ in range(20):
            # A loop that does nothing but send commands loses about half the
            # cancellations: cancelled again often, it still ends at once.
            task = asyncio.create_task(cancellable(poll, again_after_s=0.05))
            await asyncio.sleep(after_s)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done, f"still running 10 s after being cancelled {after_s} s in"
            assert task.cancelled()
    finally:
        await redis.aclose()
