"""The route table in Redis and every process's in-process copy of it.

Redis holds one hash field per route; a change is written to the hash and published,
with the new value, on a channel every router process follows. Requests read only the
in-process copy: while Redis is down, routing goes on from it.
"""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis
from redis.exceptions import RedisError

from dockyard_common import TransientError, get_logger
from dockyard_router.tables import Route, RouteTable

__all__ = ["ROUTES_CHANNEL", "ROUTES_HASH", "RouteStore"]

log = get_logger(__name__)

ROUTES_HASH = "dockyard:routes"
ROUTES_CHANNEL = "dockyard:routes:changed"


class RouteStore:
    """Keeps a :class:`RouteTable` in step with Redis."""

    def __init__(self, redis: Redis, table: RouteTable) -> None:
        self._redis = redis
        self.table = table

    async def load(self) -> int:
        """Replace the in-process table with Redis's; returns the route count."""
        try:
            fields = await self._redis.hgetall(ROUTES_HASH)
        except RedisError as exc:
            raise TransientError(f"Redis unavailable while loading routes: {exc}") from exc
        fresh = RouteTable()
        for raw in fields.values():
            fresh.put(Route.model_validate_json(raw))
        self.table.routes = fresh.routes
        self.table._by_key = fresh._by_key
        return len(fresh.routes)

    async def write(self, route: Route) -> None:
        """Store a route (remove it when it has no upstreams) and tell every process."""
        self.table.put(route)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if route.upstreams:
                    pipe.hset(ROUTES_HASH, route.field, route.model_dump_json())
                else:
                    pipe.hdel(ROUTES_HASH, route.field)
                pipe.publish(
                    ROUTES_CHANNEL,
                    json.dumps({"field": route.field, "route": route.model_dump(mode="json")}),
                )
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(
                f"Redis unavailable while writing route {route.field}: {exc}"
            ) from exc

    async def follow(self) -> None:
        """Apply every published change to the in-process table, reconnecting until cancelled."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(ROUTES_CHANNEL)
                    # Changes made while unsubscribed would be missed: reload after subscribing.
                    await self.load()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        change = json.loads(message["data"])
                        self.table.put(Route.model_validate(change["route"]))
            except (RedisError, TransientError, OSError) as exc:
                log.warning("routes.follow.interrupted", error=str(exc))
                await asyncio.sleep(1.0)
