"""The one Redis connection helper: no hidden retries, short timeouts.

redis-py retries ten times with backoff by default, which turns a dead Redis into seconds
of stall on the request path; callers here decide themselves what a failure means.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["connect_redis"]


def connect_redis(url: str, *, socket_timeout: float = 0.5) -> Redis:
    """A Redis client for ``url`` that fails at once instead of retrying behind your back."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        health_check_interval=10,
    )
    return client
