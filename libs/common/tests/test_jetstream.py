"""JetStream helpers against a real nats-server: provisioning, dedup, CAS, consumers."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from pydantic import ValidationError

from dockyard_common import (
    CloudEvent,
    CodeRef,
    Conflict,
    ConsumerSpec,
    EndpointSpec,
    EventType,
    ServiceRestart,
    Stored,
    TransientError,
    Version,
    Written,
)
from dockyard_common.runtime import (
    Counter,
    EventPublisher,
    ResourceStore,
    connect_nats,
    provision_jetstream,
    run_consumer,
)
from dockyard_common.runtime.lifecycle import in_background
from dockyard_common.subjects import (
    EVENTS_STREAM,
    SEQUENCES_BUCKET,
    TRAFFIC_STREAM,
    VERSIONS_BUCKET,
)
from dockyard_common.traffic import DeploymentTraffic, EndpointTraffic
from dockyard_platform.servers import start_nats


def a_version(owner: str) -> Version:
    return Version(
        owner=owner,
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
        targets=["local-eu"],
    )


async def test_provisioning_twice_changes_nothing(js: JetStreamContext) -> None:
    before = await js.stream_info(EVENTS_STREAM)
    await provision_jetstream(js)
    after = await js.stream_info(EVENTS_STREAM)
    assert after.config.subjects == before.config.subjects
    assert after.config.subjects == [
        "dockyard.events.>",
        "dockyard.reports.>",
        "dockyard.platform.>",
    ]
    assert after.config.duplicate_window == 120.0


async def test_buckets_of_an_earlier_release_get_direct_reads_and_keep_their_data(
    tmp_path: Path,
) -> None:
    # Its own server: switching a shared bucket's reads would disturb other tests.
    server = start_nats(tmp_path)
    clients = [await nats.connect(server.url) for _ in range(8)]
    try:
        js = clients[0].jetstream()
        old = await js.create_key_value(
            KeyValueConfig(bucket=VERSIONS_BUCKET, history=16, storage=StorageType.FILE)
        )
        await old.put("acme.demo.web.v1", b"kept")
        # Every service provisions at start: several at once, as the platform starts them.
        await asyncio.gather(*(provision_jetstream(nc.jetstream()) for nc in clients))
        info = await js.stream_info(f"KV_{VERSIONS_BUCKET}")
        assert info.config.allow_direct is True
        assert info.config.max_msgs_per_subject == 16
        entry = await (await js.key_value(VERSIONS_BUCKET)).get("acme.demo.web.v1")
        assert entry.value == b"kept"
    finally:
        for nc in clients:
            await nc.close()
        server.stop()


async def test_a_listing_can_skip_a_record_it_cannot_read_and_say_which(
    js: JetStreamContext,
) -> None:
    owner = f"u{secrets.token_hex(4)}"
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    await versions.create(f"{owner}.demo.web.v1", a_version(owner))
    kv = await js.key_value(VERSIONS_BUCKET)
    await kv.put(f"{owner}.demo.web.v2", b"not json")
    try:
        with pytest.raises(ValidationError):
            [key async for key, _ in versions.items(f"{owner}.")]
        skipped: list[str] = []
        listed = [
            key
            async for key, _ in versions.items(
                f"{owner}.", unreadable=lambda key, _: skipped.append(key)
            )
        ]
        assert (listed, skipped) == ([f"{owner}.demo.web.v1"], [f"{owner}.demo.web.v2"])
    finally:
        await kv.delete(f"{owner}.demo.web.v2")  # the bucket is shared with later tests


@pytest.fixture
async def own_bucket(js: JetStreamContext) -> AsyncIterator[str]:
    """A KV bucket of this test's own: its state is all the test's doing."""
    bucket = f"test_follow_{secrets.token_hex(4)}"
    await js.create_key_value(KeyValueConfig(bucket=bucket, history=4, direct=True))
    yield bucket
    await js.delete_key_value(bucket)


async def test_following_a_bucket_gives_what_it_holds_then_every_write_in_order(
    js: JetStreamContext, own_bucket: str
) -> None:
    versions = await ResourceStore.open(js, own_bucket, Version)
    kv = await js.key_value(own_bucket)

    async def taken(follower: AsyncIterator[Written[Version] | None], count: int) -> list[Any]:
        async with asyncio.timeout(10):
            return [
                None
                if w is None
                else (w.key, w.revision, w.value.error or "ok" if w.value else "-")
                for w in [await anext(follower) for _ in range(count)]
            ]

    early = versions.follow()
    assert await taken(early, 1) == [None], "an empty bucket is given at once"
    first = await versions.create("a", a_version("acme"))
    second = await versions.update("a", a_version("acme").model_copy(update={"error": "x"}), first)
    third = await versions.create("b", a_version("acme"))
    await versions.delete("b")
    assert await taken(early, 4) == [
        ("a", first, "ok"),
        ("a", second, "x"),
        ("b", third, "ok"),
        ("b", third + 1, "-"),  # the deletion
    ]

    # Started later: each key's last write (a deletion too), then the marker, then what comes.
    skipped: list[str] = []
    late = versions.follow(unreadable=lambda key, _: skipped.append(key))
    assert await taken(late, 3) == [("a", second, "x"), ("b", third + 1, "-"), None]
    await kv.put("c", b"not json")
    assert await taken(late, 1) == [("c", third + 2, "-")]
    assert skipped == ["c"]
    with pytest.raises(ValidationError):
        await taken(versions.follow(), 3)  # the unreadable record, without ``unreadable``
    await early.aclose()
    await late.aclose()


async def test_a_bucket_holding_only_deletions_is_followed_to_its_end(
    js: JetStreamContext, own_bucket: str
) -> None:
    versions = await ResourceStore.open(js, own_bucket, Version)
    await versions.create("a", a_version("acme"))
    await versions.delete("a")
    follower = versions.follow()
    async with asyncio.timeout(10):
        gone = await anext(follower)
        assert gone is not None and (gone.key, gone.value) == ("a", None)
        assert await anext(follower) is None
    await follower.aclose()


async def _until_recent(
    store: ResourceStore[Version], key: str, revision: int | None
) -> Stored[Version] | None:
    """What ``recent(key)`` gives once it is at ``revision`` (None: once it knows nothing)."""
    async with asyncio.timeout(5):
        while True:
            known = store.recent(key)
            if (known.revision if known else None) == revision:
                return known
            await asyncio.sleep(0.01)


async def test_a_followed_store_knows_each_key_without_a_round_trip(
    js: JetStreamContext, nats_client: NatsClient, own_bucket: str
) -> None:
    versions = await ResourceStore.open(js, own_bucket, Version)
    elsewhere = await ResourceStore.open(js, own_bucket, Version)  # another process's store
    first = await elsewhere.create("a", a_version("acme"))
    assert versions.recent("a") is None, "not followed: ask the state of record"
    async with in_background(versions.keep_current(nats_client)):
        known = await _until_recent(versions, "a", first)
        assert known is not None and known.value.owner == "acme"
        # Another process's writes and deletions come in as they are stored.
        second = await elsewhere.update(
            "a", a_version("acme").model_copy(update={"error": "x"}), first
        )
        known = await _until_recent(versions, "a", second)
        assert known is not None and known.value.error == "x"
        created = await elsewhere.create("b", a_version("acme"))
        await _until_recent(versions, "b", created)
        await elsewhere.delete("b")
        await _until_recent(versions, "b", None)
        # Its own writes are known at once, whether or not the follow has brought them back.
        revision = second
        for _ in range(20):
            revision = await versions.update("a", a_version("acme"), revision)
            own = versions.recent("a")
            assert own is not None and own.revision == revision
        # A record that does not parse is not known: get() says why.
        await (await js.key_value(own_bucket)).put("c", b"not json")
        await _until_recent(versions, "d", await elsewhere.create("d", a_version("acme")))
        assert versions.recent("c") is None
        with pytest.raises(ValidationError):
            await versions.get("c")
    assert versions.recent("a") is None, "no longer followed: it knows nothing"


async def test_a_followed_store_can_hold_only_what_it_is_told_to(
    js: JetStreamContext, nats_client: NatsClient, own_bucket: str
) -> None:
    versions = await ResourceStore.open(js, own_bucket, Version)
    elsewhere = await ResourceStore.open(js, own_bucket, Version)
    first = await elsewhere.create("a", a_version("acme"))
    async with in_background(versions.keep_current(nats_client, holds=lambda v: v.error is None)):
        await _until_recent(versions, "a", first)
        failed = a_version("acme").model_copy(update={"error": "x"})
        second = await elsewhere.update("a", failed, first)
        await _until_recent(versions, "a", None)  # forgotten, not kept at its last held write
        assert (await versions.get("a")) == Stored(failed, second)
        third = await elsewhere.update("a", a_version("acme"), second)
        await _until_recent(versions, "a", third)


async def test_a_followed_store_knows_nothing_from_a_lost_connection_until_caught_up(
    tmp_path: Path,
) -> None:
    """Writes made while its connection is away may never come through the old follow."""
    server = start_nats(tmp_path / "nats")
    port = int(server.url.rsplit(":", 1)[1])
    nc = await connect_nats(server.url, name="follower")
    clients = [nc]
    try:
        await provision_jetstream(nc.jetstream())
        versions = await ResourceStore.open(nc.jetstream(), VERSIONS_BUCKET, Version)
        first = await versions.create("a", a_version("acme"))
        async with in_background(versions.keep_current(nc, again_after_s=0.2)):
            await _until_recent(versions, "a", first)
            server.stop()
            await _until_recent(versions, "a", None)  # away: it says it does not know
            server = start_nats(tmp_path / "nats", port=port)
            # Another process writes before this one's connection is back (it retries every
            # half second), so the old follow never sees it.
            clients.append(await connect_nats(server.url, name="elsewhere"))
            other = clients[-1].jetstream()
            elsewhere = await ResourceStore.open(other, VERSIONS_BUCKET, Version)
            failed = a_version("acme").model_copy(update={"error": "x"})
            second = await elsewhere.update("a", failed, first)
            known = await _until_recent(versions, "a", second)
            assert known is not None and known.value.error == "x"
    finally:
        for client in clients:
            await client.close()
        server.stop()


async def test_publishing_the_same_change_twice_stores_it_once(js: JetStreamContext) -> None:
    owner = f"o{secrets.token_hex(4)}"
    publisher = EventPublisher(js, source="test")
    # Only this event's subject: a platform of another test on this server answers a
    # version.created with build events of its own.
    subscription = await js.subscribe(
        f"dockyard.events.{owner}.demo.web.version.created", ordered_consumer=True
    )
    for _ in range(2):
        await publisher.publish(
            EventType.VERSION_CREATED,
            a_version(owner),
            resource_key="k",
            revision=1,
        )
    first = await subscription.next_msg(timeout=10)
    assert first.headers is not None and first.headers["Nats-Msg-Id"] == "version.created:k:1"
    with pytest.raises(TimeoutError):
        await subscription.next_msg(timeout=0.3)
    await subscription.unsubscribe()


async def test_a_platform_event_goes_to_the_platform_subject_once(js: JetStreamContext) -> None:
    instance = secrets.token_hex(4)
    subscription = await js.subscribe("dockyard.platform.>", ordered_consumer=True)
    restart = ServiceRestart(
        instance=instance,
        host="here",
        service="builder",
        exited_pid=10,
        pid=11,
        signal="SIGKILL",
        ran_s=3.5,
        restarts=1,
    )
    publisher = EventPublisher(js, source="dockyard/supervisor")
    for _ in range(2):  # a retried publish of the same restart
        await publisher.publish(
            EventType.PLATFORM_SERVICE_RESTARTED,
            restart,
            resource_key=restart.key,
            revision=restart.restarts,
        )
    seen = []
    with contextlib.suppress(TimeoutError):
        while True:
            message = await subscription.next_msg(timeout=0.5)
            event = CloudEvent.model_validate_json(message.data)
            if event.data["instance"] == instance:  # other tests' platforms restart too
                seen.append((message.subject, event))
    await subscription.unsubscribe()
    assert [subject for subject, _ in seen] == ["dockyard.platform.service.restarted"]
    event = seen[0][1]
    assert event.type == "platform.service.restarted"
    assert event.parsed_data() == restart


async def test_the_request_metrics_feed_goes_to_its_own_stream(js: JetStreamContext) -> None:
    owner = "o" + secrets.token_hex(4)
    traffic = DeploymentTraffic(
        owner=owner,
        project="demo",
        deployment="web",
        router="here/1/0",
        region="eu",
        window_s=1.0,
        endpoints=[EndpointTraffic(version="v1", endpoint="predict", region="eu", requests=3)],
    )
    await EventPublisher(js, source="dockyard/router").publish(
        EventType.ROUTER_TRAFFIC_OBSERVED, traffic, resource_key="here/1/0", revision=1
    )
    stored = await js.get_last_msg(TRAFFIC_STREAM, f"dockyard.traffic.{owner}.demo.web")
    event = CloudEvent.model_validate_json(stored.data or b"")
    assert event.parsed_data() == traffic
    events = await js.stream_info(EVENTS_STREAM, subjects_filter=f"dockyard.*.{owner}.>")
    assert not events.state.subjects  # the feed never fills the event stream


async def test_a_stale_write_loses_with_conflict(js: JetStreamContext) -> None:
    store = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    key = f"o{secrets.token_hex(4)}.demo.web.v1"
    version = a_version("acme")
    revision = await store.create(key, version)
    with pytest.raises(Conflict):
        await store.create(key, version)
    await store.update(key, version.model_copy(update={"error": "first"}), revision)
    with pytest.raises(Conflict):
        await store.update(key, version.model_copy(update={"error": "second"}), revision)
    stored = await store.get(key)
    assert stored is not None and stored.value.error == "first"


async def test_concurrent_counters_never_hand_out_a_number_twice(js: JetStreamContext) -> None:
    counter = await Counter.open(js, SEQUENCES_BUCKET)
    key = f"o{secrets.token_hex(4)}.demo.web.20261125"
    numbers = await asyncio.gather(*(counter.next(key) for _ in range(20)))
    assert sorted(numbers) == list(range(1, 21))


async def test_a_transient_failure_is_redelivered_and_then_acknowledged(
    js: JetStreamContext,
) -> None:
    owner = f"o{secrets.token_hex(4)}"
    seen: list[int] = []
    done = asyncio.Event()

    async def flaky(event: CloudEvent, message: Msg) -> None:
        if event.data["owner"] != owner:
            return
        seen.append(message.metadata.num_delivered or 0)
        if len(seen) < 3:
            raise TransientError("not yet", delay=0.05)
        done.set()

    spec = ConsumerSpec(durable=f"test-{owner}", event_types=[EventType.VERSION_CREATED])
    consumer = asyncio.create_task(run_consumer(js, spec, flaky))
    try:
        await EventPublisher(js, source="test").publish(
            EventType.VERSION_CREATED,
            a_version(owner),
            resource_key=f"{owner}.demo.web.v1",
            revision=1,
        )
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        consumer.cancel()
        await js.delete_consumer(EVENTS_STREAM, spec.durable)
    assert seen == [1, 2, 3]


async def test_a_concurrent_consumer_handles_a_quick_event_while_a_slow_one_runs(
    js: JetStreamContext,
) -> None:
    owner = f"o{secrets.token_hex(4)}"
    release = asyncio.Event()
    handled: list[str] = []
    quick_done = asyncio.Event()
    slow_done = asyncio.Event()
    attempts: dict[str, int] = {}

    async def handle(event: CloudEvent, message: Msg) -> None:
        if event.data["owner"] != owner:
            return
        name = event.data["name"]
        attempts[name] = attempts.get(name, 0) + 1
        if name == "slow":
            await release.wait()
            handled.append(name)
            slow_done.set()
            return
        if attempts[name] == 1:  # the retry decision still holds: redelivered, then done
            raise TransientError("not yet", delay=0.05)
        handled.append(name)
        quick_done.set()

    spec = ConsumerSpec(
        durable=f"test-{owner}", event_types=[EventType.VERSION_CREATED], concurrency=2
    )
    consumer = asyncio.create_task(run_consumer(js, spec, handle))
    publisher = EventPublisher(js, source="test")
    try:
        for name in ("slow", "quick"):
            await publisher.publish(
                EventType.VERSION_CREATED,
                a_version(owner).model_copy(update={"name": name}),
                resource_key=f"{owner}.demo.web.{name}",
                revision=1,
            )
        await asyncio.wait_for(quick_done.wait(), timeout=10)
        assert handled == ["quick"], "the quick event waited for the slow one"
        release.set()
        await asyncio.wait_for(slow_done.wait(), timeout=10)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await js.delete_consumer(EVENTS_STREAM, spec.durable)
    assert handled == ["quick", "slow"]
    assert attempts == {"slow": 1, "quick": 2}


def test_a_consumer_may_not_take_more_at_once_than_it_may_leave_unacknowledged() -> None:
    with pytest.raises(ValueError, match="exceeds max_ack_pending"):
        ConsumerSpec(durable="x", event_types=[">"], max_ack_pending=1, concurrency=2)
    with pytest.raises(ValueError, match="at least 1"):
        ConsumerSpec(durable="x", event_types=[">"], concurrency=0)
