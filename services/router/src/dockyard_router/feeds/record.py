"""Following the state of record: every feed's bucket watched in revision order, each write
applied to the table as it comes.

Each bucket is followed with :func:`dockyard_common.runtime.state.watch_bucket` (each key's newest
write first, then every write as it is stored); a write older than the table's entry
changes nothing. Once a feed has caught up, what it did not see is no longer in the
record and is forgotten; once every feed has, the table is loaded. After each write of
the aliases bucket, the process's heartbeat says it has applied it: the API answers an
alias switch once every live router process has.

A process starting while NATS does not answer loads the Redis mirror meanwhile
(:class:`.Mirror`); the feeds take over when NATS answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from dockyard_common import RouterHeartbeat, TransientError, Written, get_logger
from dockyard_common.runtime import Heartbeat, cancellable, connect_nats, provision_jetstream
from dockyard_common.runtime.state import watch_bucket
from dockyard_common.subjects import EVENTS_STREAM, ROUTER_HEARTBEAT_SUBJECT
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.feed import Feed
from dockyard_router.feeds.mirror import Mirror
from dockyard_router.feeds.regions import REGIONS
from dockyard_router.feeds.versions import VERSIONS
from dockyard_router.tables import RouteTable

__all__ = ["FEEDS", "LEGACY_CONSUMER", "RecordFeeds", "follow_record"]

log = get_logger(__name__)

FEEDS: list[Feed[Any]] = [VERSIONS, ALIASES, REGIONS]
"""Every input from the record (see the table in :mod:`dockyard_router.feeds`)."""

LEGACY_CONSUMER = "router-routes"
"""The durable consumer of endpoint events that routers of earlier releases followed:
deleted at start, or it would keep every endpoint event of the stream for nobody."""

_RETRY_S = 1.0
_MIRROR_AFTER_S = 2.0
"""How long a starting process waits for NATS before it loads the Redis mirror."""


class RecordFeeds:
    """Applies the writes of every feed's bucket to the table, and tells the mirror."""

    def __init__(
        self,
        table: RouteTable,
        mirror: Mirror,
        loaded: Callable[[], object],
        *,
        on_applied: Callable[[Feed[Any], BaseModel | None], object] | None = None,
        feeds: list[Feed[Any]] = FEEDS,
    ) -> None:
        self._table = table
        self._mirror = mirror
        self._loaded = loaded
        self._on_applied = on_applied
        self._feeds = feeds
        self._caught_up: set[str] = set()
        self._through: dict[str, int] = {}

    def apply(self, feed: Feed[Any], write: Written[bytes]) -> str:
        """Take one write of ``feed``'s bucket into the table; its table key. A record that
        does not parse is logged and passed over: nothing later makes it readable, and
        waiting on it would stall every write after it."""
        key = feed.table_key(write.key)
        self._through[feed.name] = write.revision
        try:
            value = None if write.value is None else feed.read(write.value)
        except ValidationError as exc:
            log.error("feeds.record.unreadable", feed=feed.name, key=write.key, error=str(exc))
            return key
        if feed.put(self._table, key, write.revision, value):
            self._mirror.changed(feed, key, write.revision, value)
            if self._on_applied is not None:
                self._on_applied(feed, value)
        return key

    async def follow(self, js: JetStreamContext, applied_aliases: Callable[[int], object]) -> None:
        """Follow every feed until cancelled; ``applied_aliases(revision)`` after each write
        of the aliases bucket (every write up to it is then applied)."""
        async with asyncio.TaskGroup() as tasks:
            for feed in self._feeds:
                after = applied_aliases if feed is ALIASES else None
                tasks.create_task(self._follow(js, feed, after))

    async def _follow(
        self, js: JetStreamContext, feed: Feed[Any], after: Callable[[int], object] | None
    ) -> None:
        while True:
            seen: set[str] = set()

            def on_write(write: Written[bytes], seen: set[str] = seen) -> None:
                seen.add(self.apply(feed, write))
                if after is not None:
                    after(write.revision)

            def on_caught_up(seen: set[str] = seen) -> None:
                feed.keep(self._table, seen)
                self._caught_up.add(feed.name)
                log.info("feeds.caught_up", feed=feed.name, entries=len(seen))
                if self._caught_up.issuperset(f.name for f in self._feeds):
                    self._loaded()
                    self._mirror.caught_up(self._through)

            try:
                await watch_bucket(js, feed.bucket, on_write, on_caught_up=on_caught_up)
            except (nats.errors.Error, TimeoutError) as exc:
                # Watched again from each key's newest write: what changed meanwhile comes.
                log.warning("feeds.watch.interrupted", feed=feed.name, error=repr(exc))
                self._caught_up.discard(feed.name)
                await asyncio.sleep(_RETRY_S)


async def follow_record(
    nats_url: str,
    feeds: RecordFeeds,
    mirror: Mirror,
    serving: asyncio.Event,
    beat: Callable[[str, int], RouterHeartbeat],
    also: Callable[[NatsClient], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Until cancelled: connect to NATS (the mirror loaded while it does not answer), follow
    every feed, and once ``serving`` is set, beat on the routers' heartbeat subject and run
    ``also`` (the traffic feed) on the same connection."""
    connecting = asyncio.create_task(_connect(nats_url))
    loading: asyncio.Task[None] | None = None
    try:
        await asyncio.wait([connecting], timeout=_MIRROR_AFTER_S)
        if not connecting.done():
            log.warning("feeds.nats.unavailable", loading="mirror")
            loading = asyncio.create_task(cancellable(mirror.load_until_loaded))
        nc = await connecting
    finally:
        for task in (connecting, loading):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    try:
        js = nc.jetstream()
        await _prepare(js)
        heartbeat = Heartbeat(nc, ROUTER_HEARTBEAT_SUBJECT, beat)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(feeds.follow(js, heartbeat.applied_through))
            await serving.wait()
            tasks.create_task(heartbeat.run())
            if also is not None:
                tasks.create_task(also(nc))
    finally:
        with contextlib.suppress(nats.errors.Error):
            await nc.close()


async def _connect(url: str) -> NatsClient:
    """A connection to NATS, once it answers (tried again and again until then)."""
    while True:
        try:
            return await connect_nats(url, name="dockyard-router")
        except TransientError as exc:
            log.warning("feeds.nats.unavailable", error=str(exc))
            await asyncio.sleep(_RETRY_S)


async def _prepare(js: JetStreamContext) -> None:
    """The buckets the feeds watch (every service provisions them), and no consumer left
    from an earlier release; retried while JetStream does not answer."""
    while True:
        try:
            await provision_jetstream(js)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(EVENTS_STREAM, LEGACY_CONSUMER)
                log.info("feeds.legacy_consumer.deleted", consumer=LEGACY_CONSUMER)
            return
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("feeds.prepare.failed", error=repr(exc))
            await asyncio.sleep(_RETRY_S)
