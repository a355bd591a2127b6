"""What a router process reports having applied, and how the API's wait reads it (real NATS).

A heartbeat carries one number however many aliases exist: the alias bucket revision the
process's watch has applied through.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from dockyard_api.applied import AppliedWatch
from dockyard_common import Alias, AliasTarget, RouterHeartbeat
from dockyard_common.runtime import ResourceStore
from dockyard_common.runtime.redis_client import connect_redis
from dockyard_common.subjects import ALIASES_BUCKET, ROUTER_HEARTBEAT_SUBJECT, alias_key
from dockyard_router.feeds import FEEDS, Mirror, RecordFeeds
from dockyard_router.tables import RouteTable


def production(owner: str, version: str, minute: int) -> Alias:
    return Alias(
        owner=owner,
        project="demo",
        deployment="web",
        name="production",
        target=AliasTarget(version=version),
        updated_at=datetime(2026, 11, 25, 12, minute, tzinfo=UTC),
    )


async def until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_the_watch_reports_every_write_applied_through_the_last_even_an_unreadable_one(
    js: JetStreamContext,
) -> None:
    owner = f"w{secrets.token_hex(4)}"
    kv = await js.key_value(ALIASES_BUCKET)
    broken_key = alias_key(owner, "demo", "web", "broken")
    aliases = await ResourceStore.open(js, ALIASES_BUCKET, Alias)
    key = alias_key(owner, "demo", "web", "production")
    first = await aliases.create(key, production(owner, "v1", 0))
    through: list[int] = []
    table = RouteTable()
    # A process that writes no mirror: Redis is never called.
    mirror = Mirror(connect_redis("redis://127.0.0.1:1"), table, FEEDS, writes=False)
    feeds = RecordFeeds(table, mirror, lambda: None)
    watching = asyncio.create_task(feeds.follow(js, through.append))
    production_key = f"{owner}/demo/web/production"
    try:
        await until(lambda: through and through[-1] >= first)
        second = await aliases.update(key, production(owner, "v2", 1), first)
        await until(lambda: through[-1] >= second)
        assert table.alias_revisions[production_key] == second
        assert table.aliases[production_key].target.version == "v2"

        # A record no router can read is reported as passed, or every later switch would
        # wait on it until the API's bound.
        broken = await kv.put(broken_key, b"not json")
        await until(lambda: through[-1] >= broken)
        assert f"{owner}/demo/web/broken" not in table.aliases
        assert through == sorted(through)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        # The bucket is shared: a platform started later would read this record.
        await kv.delete(broken_key)


async def test_the_api_waits_for_every_live_router_to_report_the_revision(
    nats_client: NatsClient,
) -> None:
    # Its own subject: routers of other tests' platforms beat on this NATS too.
    subject = f"{ROUTER_HEARTBEAT_SUBJECT}.test-{secrets.token_hex(3)}"
    watch = AppliedWatch(nats_client, subject, alive_for_s=3.0)
    following = asyncio.create_task(watch.run())
    ahead, behind = f"ahead-{secrets.token_hex(3)}", f"behind-{secrets.token_hex(3)}"

    async def beat(process: str, through: int) -> None:
        heartbeat = RouterHeartbeat(process=process, region="eu", applied_through=through)
        await nats_client.publish(subject, heartbeat.model_dump_json().encode())
        await nats_client.flush()

    async def heard_both() -> bool:
        # Beats sent before the watch subscribed are lost: beat again until both are heard
        # (revision 0: no waiting).
        await beat(ahead, 41)
        await beat(behind, 9)
        return (await watch.wait_applied(0, within_s=0)).processes == 2

    try:
        for _ in range(200):
            if await heard_both():
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the watch never heard the two heartbeats")
        waiting = asyncio.create_task(watch.wait_applied(40, within_s=5.0))
        done, _ = await asyncio.wait({waiting}, timeout=0.2)
        assert not done, "answered while a live router had not applied revision 40"
        await beat(behind, 40)
        outcome = await asyncio.wait_for(waiting, 2.0)
        assert (outcome.processes, outcome.lagging) == (2, [])

        lagging = await watch.wait_applied(42, within_s=0.3)
        assert lagging.lagging == sorted([ahead, behind])
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following


async def test_a_watch_that_just_began_waits_a_beat_interval_before_it_sees_no_one_lagging(
    nats_client: NatsClient,
) -> None:
    # A process beats once a second: a watch listening for less than that may not yet have
    # heard one that has not applied the write.
    subject = f"{ROUTER_HEARTBEAT_SUBJECT}.test-{secrets.token_hex(3)}"
    loop = asyncio.get_running_loop()

    async def beat(through: int) -> None:
        heartbeat = RouterHeartbeat(process="late", region="eu", applied_through=through)
        await nats_client.publish(subject, heartbeat.model_dump_json().encode())

    watch = AppliedWatch(nats_client, subject, all_heard_after_s=0.6)
    following = asyncio.create_task(watch.run())
    try:
        waiting = asyncio.create_task(watch.wait_applied(7, within_s=5.0))
        await asyncio.sleep(0.3)
        await beat(3)  # heard within the first interval, behind
        await asyncio.sleep(0.6)
        assert not waiting.done(), "answered while a process heard late had not applied it"
        await beat(7)
        outcome = await asyncio.wait_for(waiting, 2.0)
        assert (outcome.processes, outcome.lagging) == (1, [])

        # No one beating at all: the first answer still waits out the interval.
        alone = AppliedWatch(nats_client, f"{subject}.alone", all_heard_after_s=0.6)
        started = loop.time()
        listening = asyncio.create_task(alone.run())
        try:
            assert (await alone.wait_applied(7, within_s=5.0)).processes == 0
            assert loop.time() - started >= 0.6
            started = loop.time()
            assert (await alone.wait_applied(7, within_s=5.0)).lagging == []
            assert loop.time() - started < 0.3, "waited once the interval was listened to"
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
