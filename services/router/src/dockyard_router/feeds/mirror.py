"""The Redis mirror: a copy of the tables derived from the feeds, for operators and for a
router process that starts while NATS is away.

One process of each router writes it (its first worker, or its only process): every entry
a feed changes, at the revision of the record write it came from, in a hash per feed
(``dockyard:mirror:<feed>``, field: the entry's table key, value: what routing reads of
it as JSON; the revisions in ``dockyard:mirror:<feed>:revisions``). Routers sharing one
Redis write the same entries; a guard in Redis keeps each entry's latest revision,
whoever writes last. Once the feeds have caught up with the record, the writer writes
everything it holds, removes what the record no longer holds, and marks the mirror
complete (``dockyard:mirror:complete``). Redis losing its data (a restart without
persistence, a flush) takes the mark with it: the writer then writes everything again
from what its process holds.

Nothing on the request path reads Redis. A process reads the mirror only when NATS does
not answer as it starts; a complete mirror then counts as loaded tables until the feeds
take over.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dockyard_common import get_logger
from dockyard_router.feeds.feed import Feed
from dockyard_router.tables import RouteTable

__all__ = ["COMPLETE", "LEGACY_KEYS", "Mirror"]

log = get_logger(__name__)

COMPLETE = "dockyard:mirror:complete"
"""Present while the mirror holds whole tables; gone after Redis lost its data."""
LEGACY_KEYS = (
    "dockyard:routes",
    "dockyard:aliases",
    "dockyard:aliases:revisions",
    "dockyard:regions:drained",
    "dockyard:tables:version",
    "dockyard:tables:built",
)
"""What routers of earlier releases kept in Redis: removed once the mirror is written."""

_PUT = """
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= held then
    return 0
end
if ARGV[3] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
else
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
"""Store an entry (value '' : remove it) at its record revision, unless Redis holds that
revision of it or a later one."""

_Change = tuple[Feed[Any], int, BaseModel | None]
"""A feed's entry to write: its feed, revision and value (None: removed)."""


class Mirror:
    """Writes what this process's feeds apply to Redis (when ``writes``), and loads it."""

    def __init__(
        self, redis: Redis, table: RouteTable, feeds: list[Feed[Any]], *, writes: bool
    ) -> None:
        self._redis = redis
        self._table = table
        self._feeds = feeds
        self._writes = writes
        self._put = redis.register_script(_PUT)
        self._unsaved: dict[tuple[str, str], _Change] = {}
        """Entries applied here and not yet in Redis: (feed, key) → the newest change."""
        self._wake = asyncio.Event()
        self._through: dict[str, int] | None = None
        """Each feed's revision applied through, once the feeds caught up with the record."""
        self._sync = False
        """Everything is to be written, and what the record no longer holds removed."""

    def changed(self, feed: Feed[Any], key: str, revision: int, value: BaseModel | None) -> None:
        """A feed changed an entry: queued for Redis (for the writing process only)."""
        if self._writes:
            self._unsaved[(feed.name, key)] = (feed, revision, value)
            self._wake.set()

    def caught_up(self, through: dict[str, int]) -> None:
        """The feeds hold the record, each applied through its revision in ``through``:
        the writer writes everything and removes what the record no longer holds."""
        self._through = dict(through)
        self._sync = True
        self._wake.set()

    async def load(self) -> bool:
        """Take the mirror into the table (unless the feeds got there first); False when
        Redis holds no complete mirror. RedisError when it does not answer."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(COMPLETE)
            for feed in self._feeds:
                pipe.hgetall(feed.mirror_hash)
                pipe.hgetall(f"{feed.mirror_hash}:revisions")
            complete, *hashes = await pipe.execute()
        if not complete:
            return False
        if self._table.loaded:
            return True
        counts: dict[str, int] = {}
        for index, feed in enumerate(self._feeds):
            values, revisions = hashes[2 * index], hashes[2 * index + 1]
            for key, raw in values.items():
                revision = int(revisions.get(key) or 0)
                try:
                    value = feed.model.model_validate_json(raw)
                except ValidationError as exc:
                    log.error("mirror.entry.unreadable", feed=feed.name, key=key, error=str(exc))
                    continue
                if revision and feed.put(self._table, key, revision, value):
                    counts[feed.name] = counts.get(feed.name, 0) + 1
        self._table.loaded = True
        log.info("mirror.loaded", **counts)
        return True

    async def load_until_loaded(self, every_s: float = 1.0) -> None:
        """Try :meth:`load` until the table is loaded (by it or by the feeds)."""
        while not self._table.loaded:
            try:
                if await self.load():
                    return
                log.info("mirror.incomplete")
            except (RedisError, OSError) as exc:
                log.warning("mirror.load.failed", error=str(exc))
            await asyncio.sleep(every_s)

    async def keep_written(self, every_s: float = 1.0, retry_after_s: float = 1.0) -> None:
        """Write the changes applied here to Redis, until cancelled: at once as they come,
        and everything when the feeds caught up or Redis lost the mirror (checked every
        ``every_s``); retried while Redis does not answer."""
        failing = False  # said once per outage, not at every retry
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_changes()
                if self._table.loaded and (self._sync or not await self._redis.exists(COMPLETE)):
                    await self._write_everything()
            except (RedisError, OSError) as exc:
                (log.debug if failing else log.warning)(
                    "mirror.write.failed", unsaved=len(self._unsaved), error=str(exc)
                )
                failing = True
                await asyncio.sleep(retry_after_s)
            else:
                if failing:
                    log.info("mirror.write.resumed")
                failing = False

    async def _write_changes(self) -> None:
        if not self._unsaved:
            return
        batch, self._unsaved = self._unsaved, {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (_, key), (feed, revision, value) in batch.items():
                    await self._put_entry(pipe, feed, key, revision, value)
                await pipe.execute()
        except BaseException:
            for name_key, change in batch.items():
                newer = self._unsaved.get(name_key)
                if newer is None or newer[1] < change[1]:
                    self._unsaved[name_key] = change
            raise

    async def _write_everything(self) -> None:
        through, counts = self._through, {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for feed in self._feeds:
                held = feed.held(self._table)
                counts[feed.name] = len(held)
                for key, revision, value in held:
                    await self._put_entry(pipe, feed, key, revision, value)
                if through is not None and through.get(feed.name):
                    # Gone from the record while no writer ran, or from before Redis came
                    # back: removed as of the revision the feed applied through.
                    keys = {key for key, _, _ in held}
                    fields = {str(f) for f in await self._redis.hkeys(feed.mirror_hash)}
                    for stale in fields - keys:
                        await self._put_entry(pipe, feed, stale, through[feed.name], None)
            pipe.delete(*LEGACY_KEYS)
            pipe.set(COMPLETE, "1")
            await pipe.execute()
        self._sync = False
        log.info("mirror.written", **counts)

    async def _put_entry(
        self, pipe: Any, feed: Feed[Any], key: str, revision: int, value: BaseModel | None
    ) -> None:
        encoded = "" if value is None else value.model_dump_json()
        await self._put(
            keys=[feed.mirror_hash, f"{feed.mirror_hash}:revisions"],
            args=[key, revision, encoded],
            client=pipe,
        )
