"""The route table in Redis and every process's in-process copy of it.

Redis holds one hash field per route; a change is written to the hash and published,
with the new value, on a channel every router process follows, and counted in a version
key: a process that heard fewer changes than Redis counts (a lost message) reloads.
Requests read only the in-process copy: while Redis is down, routing goes on from it, and
a process that starts then takes its copy from the state of record instead.
Routes that do not serve (deploying, failed, stopped) are held too: they say why a path
does not resolve.

Aliases are held in Redis too, but reach each process through its own watch of the alias
record (:mod:`.record`). One process of a router (``saves_aliases``: its first worker)
writes what its watch applies to Redis's alias table, which a process loads with the
routes; nothing is published for an alias, since every process has the change already.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from dockyard_common import Alias, TransientError, get_logger
from dockyard_router.tables import Route, RouteTable, alias_table_key

__all__ = [
    "ALIASES_HASH",
    "ALIAS_REVISIONS_HASH",
    "BUILT_MARKER",
    "ROUTES_CHANNEL",
    "ROUTES_HASH",
    "TABLES_VERSION",
    "RouteStore",
]

log = get_logger(__name__)

ROUTES_HASH = "dockyard:routes"
ALIASES_HASH = "dockyard:aliases"
ALIAS_REVISIONS_HASH = "dockyard:aliases:revisions"
ROUTES_CHANNEL = "dockyard:routes:changed"
DRAINED_SET = "dockyard:regions:drained"
"""Regions an operator drained (operator state: kept in Redis, lost with Redis's data)."""
TABLES_VERSION = "dockyard:tables:version"
"""Counts the changes published: a process that heard fewer than it counts missed one."""
BUILT_MARKER = "dockyard:tables:built"
"""Present while Redis holds complete tables; gone after Redis lost its data."""

TableSource = Callable[[], Awaitable[RouteTable]]

_SAVE_ALIAS = """
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[3]) <= held then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
"""Store an alias at its record revision unless Redis holds that revision or a later one
(written by another router sharing this Redis, or by a rebuild from the record)."""


class RouteStore:
    """Keeps a :class:`RouteTable` in step with Redis."""

    def __init__(
        self,
        redis: Redis,
        table: RouteTable,
        source: TableSource,
        on_alias: Callable[[Alias, int], None] | None = None,
        *,
        saves_aliases: bool = False,
    ) -> None:
        self._redis = redis
        self.table = table
        self._source = source
        self._on_alias = on_alias
        self._saves_aliases = saves_aliases
        self._save_alias = redis.register_script(_SAVE_ALIAS)
        self._unsaved: dict[str, tuple[Alias, int]] = {}
        """Aliases applied here and not yet in Redis: key → newest change and its revision."""
        self._has_unsaved = asyncio.Event()
        self._base = 0
        """The table version when this process last loaded the tables."""
        self._heard = 0
        """Changes heard on the channel since."""
        self._awaited: int | None = None
        """A version seen ahead of what was heard at the last check."""

    async def load(self) -> int:
        """Replace the in-process table with Redis's; returns the route count."""
        try:
            # Read first: a change made meanwhile is both loaded and heard (counted twice,
            # which only delays noticing a miss; never the other way round).
            version = int(await self._redis.get(TABLES_VERSION) or 0)
            routes = await self._redis.hgetall(ROUTES_HASH)
            aliases = await self._redis.hgetall(ALIASES_HASH)
            revisions = await self._redis.hgetall(ALIAS_REVISIONS_HASH)
            drained = await self._redis.smembers(DRAINED_SET)
        except RedisError as exc:
            raise TransientError(f"Redis unavailable while loading routes: {exc}") from exc
        fresh = RouteTable()
        for raw in routes.values():
            fresh.put(Route.model_validate_json(raw))
        for key, raw in aliases.items():
            fresh.put_alias(Alias.model_validate_json(raw), int(revisions.get(key, 0)))
        fresh.drained = frozenset(str(region) for region in drained)
        self.table.replace_with(fresh)
        self._base, self._heard = version, 0
        return len(fresh.routes)

    async def load_from_record(self) -> int:
        """Replace the in-process table with one built from the state of record (Redis is
        away); returns the route count. Regions drained by an operator are kept in Redis
        only: none is drained until Redis answers again."""
        fresh = await self._source()
        self.table.replace_with(fresh)
        return len(fresh.routes)

    async def load_at_start(self) -> None:
        """Load the tables from Redis (rebuilt from the record first if it lost them), else
        from the state of record; with neither, the table stays unloaded (requests that do
        not resolve get 503) until :meth:`follow` manages one."""
        try:
            await self.ensure_tables()
            log.info("routes.loaded", routes=await self.load())
        except TransientError as exc:
            log.warning("routes.load.failed", error=str(exc))
            await self._load_from_record()

    async def _load_from_record(self) -> None:
        try:
            log.info("routes.loaded_from_record", routes=await self.load_from_record())
        except TransientError as exc:
            log.warning("routes.record_load.failed", error=str(exc))

    async def write(self, route: Route) -> None:
        """Store a route (one without upstreams too: it says why a path does not resolve)
        and tell every process; a report older than the one held changes nothing."""
        if not self.table.put(route):
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(ROUTES_HASH, route.field, route.model_dump_json())
                pipe.incr(TABLES_VERSION)
                pipe.publish(ROUTES_CHANNEL, json.dumps({"route": route.model_dump(mode="json")}))
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(
                f"Redis unavailable while writing route {route.field}: {exc}"
            ) from exc

    def apply_alias(self, alias: Alias, revision: int) -> bool:
        """Take an alias into this process's table (unless a newer one is held); True if so.
        With ``saves_aliases``, it is also queued for :meth:`save_aliases`."""
        if not self.table.put_alias(alias, revision):
            return False
        if self._saves_aliases:
            self._unsaved[alias_table_key(alias)] = (alias, revision)
            self._has_unsaved.set()
        if self._on_alias is not None:
            self._on_alias(alias, revision)
        return True

    async def save_aliases(self, retry_after_s: float = 1.0) -> None:
        """Write the aliases this process applies to Redis's table, until cancelled: the
        newest change of each, once Redis answers (retried while it is away).

        Redis's copy is for loading; the alias watch of every process is what routes, so
        the write waits for nothing. It was the event path's job (``alias.changed``, one
        router process's consumer) until a profile showed that delivery, parsed for a write
        every watch had the data for, taking a fifth of the workers' CPU during switches.
        """
        while True:
            await self._has_unsaved.wait()
            self._has_unsaved.clear()
            batch, self._unsaved = self._unsaved, {}
            try:
                for key, (alias, revision) in list(batch.items()):
                    await self._save_alias(
                        keys=[ALIASES_HASH, ALIAS_REVISIONS_HASH],
                        args=[key, alias.model_dump_json(), revision],
                    )
                    del batch[key]
            except (RedisError, OSError) as exc:
                log.warning("routes.aliases.save_failed", unsaved=len(batch), error=str(exc))
                for key, change in batch.items():
                    self._unsaved.setdefault(key, change)  # unless a newer one came meanwhile
                self._has_unsaved.set()
                await asyncio.sleep(retry_after_s)

    async def ensure_tables(self) -> bool:
        """Rebuild Redis's tables from the state of record if it lost them; True if it did."""
        try:
            if await self._redis.exists(BUILT_MARKER):
                return False
            fresh = await self._source()
            # HSETNX: a field present now was written by an event after Redis lost its data,
            # so it is newer than this snapshot of the record and is kept.
            async with self._redis.pipeline(transaction=True) as pipe:
                for route in fresh.known_routes():
                    pipe.hsetnx(ROUTES_HASH, route.field, route.model_dump_json())
                for key, alias in fresh.aliases.items():
                    pipe.hsetnx(ALIASES_HASH, key, alias.model_dump_json())
                    pipe.hsetnx(ALIAS_REVISIONS_HASH, key, str(fresh.alias_revisions.get(key, 0)))
                pipe.set(BUILT_MARKER, "1")
                pipe.incr(TABLES_VERSION)
                pipe.publish(ROUTES_CHANNEL, json.dumps({"reload": True}))
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"Redis unavailable while rebuilding tables: {exc}") from exc
        log.info("routes.rebuilt", routes=len(fresh.routes), aliases=len(fresh.aliases))
        return True

    async def watch_tables(self, every_s: float = 1.0) -> None:
        """Notice Redis losing its data (a restart, a flush) and rebuild, until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.ensure_tables()
                await self._reload_if_behind()
            except TransientError as exc:
                log.debug("routes.watch.redis_unavailable", error=str(exc))

    async def _reload_if_behind(self) -> None:
        """Reload when Redis counts changes this process has still not heard a check later
        (a message can be on its way at one check, not at two)."""
        try:
            version = int(await self._redis.get(TABLES_VERSION) or 0)
        except RedisError as exc:
            raise TransientError(f"Redis unavailable while checking the tables: {exc}") from exc
        heard = self._base + self._heard
        if self._awaited is not None and heard < self._awaited:
            log.warning("routes.missed", version=version, heard=heard)
            self._awaited = None
            await self.load()
            return
        self._awaited = version if version > heard else None

    async def set_drained(self, region: str, drained: bool) -> None:
        """Drain (or undrain) a region for every router process."""
        self.table.drained = (
            self.table.drained | {region} if drained else self.table.drained - {region}
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if drained:
                    pipe.sadd(DRAINED_SET, region)
                else:
                    pipe.srem(DRAINED_SET, region)
                pipe.incr(TABLES_VERSION)
                pipe.publish(ROUTES_CHANNEL, json.dumps({"drained": sorted(self.table.drained)}))
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"Redis unavailable while draining {region}: {exc}") from exc

    def _apply(self, change: dict[str, object]) -> None:
        if "drained" in change and isinstance(change["drained"], list):
            self.table.drained = frozenset(str(region) for region in change["drained"])
        if "route" in change:
            self.table.put(Route.model_validate(change["route"]))

    async def _reload(self) -> None:
        try:
            await self.load()
        except TransientError as exc:
            log.warning("routes.reload.failed", error=str(exc))

    async def follow(self) -> None:
        """Apply every published change to the in-process table, reconnecting until cancelled."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(ROUTES_CHANNEL)
                    # Changes made while unsubscribed would be missed: reload after subscribing,
                    # from tables rebuilt first if Redis came back empty.
                    await self.ensure_tables()
                    await self.load()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        self._heard += 1
                        change = json.loads(message["data"])
                        if change.get("reload"):
                            await self._reload()
                        else:
                            self._apply(change)
            except (RedisError, TransientError, OSError) as exc:
                log.warning("routes.follow.interrupted", error=str(exc))
                if not self.table.loaded:  # nothing loaded since start: the record may answer
                    await self._load_from_record()
                await asyncio.sleep(1.0)
