"""The alias switch (:mod:`dockyard_api.switching`): its answer, and how it stands against a
concurrent stop of its version and against other writers (real NATS KV, a server of the
test's own: schedulers of other tests' platforms would act on these versions).

The switch writes the alias, then rewrites ("holds") each version it names at the revision
it read. A stop reads the version, then the aliases, then writes at the revision it read.
A switch is planned from the buckets the API process follows when they tell enough, and
from the state of record otherwise, or when its write finds the alias moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from nats.js import JetStreamContext

from dockyard_api.alias_rules import alias_after_set
from dockyard_api.applied import Outcome
from dockyard_api.problems import Problem
from dockyard_api.switching import (
    AliasRollback,
    AliasSwitch,
    _go_live,
    _hold_versions,
    _Plan,
    _recent_plan,
    _write_plan,
    _Written,
    roll_back_alias,
    switch_alias,
)
from dockyard_common import (
    Alias,
    AliasTarget,
    CodeRef,
    Conflict,
    Deployment,
    EndpointSpec,
    Version,
    VersionStatus,
)
from dockyard_common.runtime import ResourceStore
from dockyard_common.subjects import (
    ALIASES_BUCKET,
    DEPLOYMENTS_BUCKET,
    VERSIONS_BUCKET,
    alias_key,
    deployment_key,
    version_key,
)

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def ready_version(
    js: JetStreamContext, owner: str | None = None, name: str = "v1"
) -> tuple[ResourceStore[Version], str, str]:
    owner = owner or f"h{secrets.token_hex(4)}"
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    key = version_key(owner, "demo", "web", name)
    version = Version(
        owner=owner,
        project="demo",
        deployment="web",
        name=name,
        status=VersionStatus.READY,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="a:b")],
        targets=["local-eu"],
        created_at=AT,
    )
    await versions.create(key, version)
    return versions, owner, key


async def stop(versions: ResourceStore[Version], key: str) -> None:
    """What a stop writes (its version read, the aliases found not naming it)."""
    read = await versions.get(key)
    assert read is not None
    stopping = read.value.model_copy(update={"status": VersionStatus.STOPPING})
    await versions.update(key, stopping, read.revision)


async def hold(
    versions: ResourceStore[Version], owner: str, key: str, read: object
) -> dict[str, str]:
    context = SimpleNamespace(versions=versions)
    ready = frozenset({VersionStatus.READY})
    return await _hold_versions(context, owner, "demo", "web", {"v1": read}, ready)  # type: ignore[arg-type, dict-item]


async def test_a_stop_that_wrote_first_makes_the_switch_point_back(
    private_js: JetStreamContext,
) -> None:
    versions, owner, key = await ready_version(private_js)
    read = await versions.get(key)
    assert read is not None
    await stop(versions, key)  # the stop lands between
    assert await hold(versions, owner, key, read) == {"v1": "was stopped"}


async def test_a_stop_that_read_before_the_hold_fails_its_write(
    private_js: JetStreamContext,
) -> None:
    versions, owner, key = await ready_version(private_js)
    read = await versions.get(key)
    assert read is not None
    assert await hold(versions, owner, key, read) == {}
    stopping = read.value.model_copy(update={"status": VersionStatus.STOPPING})
    with pytest.raises(Conflict):  # the stop then reads the aliases again and finds this one
        await versions.update(key, stopping, read.revision)


async def test_a_status_report_meanwhile_is_held_at_its_new_revision(
    private_js: JetStreamContext,
) -> None:
    versions, owner, key = await ready_version(private_js)
    read = await versions.get(key)
    assert read is not None
    reported = await versions.update(
        key, read.value.model_copy(update={"updated_at": datetime.now(UTC)}), read.revision
    )
    assert await hold(versions, owner, key, read) == {}
    after = await versions.get(key)
    assert after is not None and after.revision > reported
    assert after.value.status is VersionStatus.READY


class RoutersBehindOn:
    """Stands in for the router heartbeats: one router never applies ``revision`` (the
    wait runs to its bound); every other revision is applied at once."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self.waited: list[int] = []

    async def wait_applied(self, revision: int, within_s: float) -> Outcome:
        self.waited.append(revision)
        if revision == self.revision:
            await asyncio.sleep(within_s)
            return Outcome(seconds=within_s, processes=2, lagging=["stuck"])
        return Outcome(seconds=0.0, processes=2, lagging=[])


@pytest.mark.parametrize("forced", [False, True])
@pytest.mark.parametrize("old_one_stopped_too", [False, True])
async def test_a_switch_whose_version_stopped_meanwhile_points_back_and_says_so(
    private_js: JetStreamContext, old_one_stopped_too: bool, forced: bool
) -> None:
    # A forced switch takes a version in any status but stopped: pointed at one, every
    # call would answer 404 until the version is started again.
    versions, owner, key = await ready_version(private_js)
    _, _, old_key = await ready_version(private_js, owner, "v0")
    aliases = await ResourceStore.open(private_js, ALIASES_BUCKET, Alias)
    name = alias_key(owner, "demo", "web", "production")

    def pointing(current: Alias | None, to: str) -> Alias:
        return alias_after_set(
            current,
            owner=owner,
            project="demo",
            deployment="web",
            name="production",
            target=AliasTarget(version=to),
            regions={},
            by="test",
        )

    first = await aliases.create(name, pointing(None, "v0"))
    before = await aliases.get(name)
    read = await versions.get(key)
    assert before is not None and read is not None
    switched = pointing(before.value, "v1")
    revision = await aliases.update(name, switched, first)
    # The stop of v1 lands after the switch read v1 and before its hold; v0's, if any,
    # while the alias pointed away from it.
    await stop(versions, key)
    if old_one_stopped_too:
        await stop(versions, old_key)
    old_before = await versions.get(old_key)
    assert old_before is not None
    routers = RoutersBehindOn(revision)
    context = SimpleNamespace(
        versions=versions,
        aliases=aliases,
        routers=routers,
        settings=SimpleNamespace(switch_wait_s=30.0),
    )
    started = time.monotonic()
    with pytest.raises(Problem) as refused:
        await _go_live(
            context,  # type: ignore[arg-type]
            _Written(
                key=name,
                updated=switched,
                revision=revision,
                before=before,
                held={"v1": read},
                force=forced,
            ),
        )
    assert (refused.value.status, refused.value.slug) == (409, "version-stopped")
    said = "version 'v1' was stopped while the alias was being set: it points where it did before"
    if old_one_stopped_too:
        said += ", but version 'v0' was stopped too: point it at a ready version"
    versions_path = f"/v1/projects/{owner}/demo/deployments/web/versions"
    said += f". Start it again (POST {versions_path}/v1/start) and switch once it is ready"
    assert refused.value.detail == said
    assert refused.value.extra["revision"] > revision
    # It acted on the failed hold at once, not after the routers' bound (30 s here), and
    # waited for the routers to apply the alias pointed back.
    assert time.monotonic() - started < 10
    assert routers.waited == [revision, refused.value.extra["revision"]]
    now = await aliases.get(name)
    assert now is not None
    assert now.value.target.version == "v0"
    assert [(c.target.version, c.action, c.by) for c in now.value.history[-2:]] == [
        ("v1", "set", "test"),
        ("v0", "rollback", "platform"),
    ]
    old_after = await versions.get(old_key)
    assert old_after is not None
    if not old_one_stopped_too:
        # Held: a stop of v0 that read it before the revert now fails its write.
        assert old_after.revision > old_before.revision
        assert old_after.value.status is VersionStatus.READY


@dataclass
class World:
    """One API process's followed stores (``context``), and the record as others see it."""

    context: SimpleNamespace
    owner: str
    versions: ResourceStore[Version]
    """Another process's store of the same bucket."""
    aliases: ResourceStore[Alias]
    key: str

    def pointing(self, current: Alias | None, to: str, by: str = "test") -> Alias:
        return alias_after_set(
            current,
            owner=self.owner,
            project="demo",
            deployment="web",
            name="production",
            target=AliasTarget(version=to),
            regions={},
            by=by,
        )

    def decide(self, to: str) -> Callable[[Alias], Alias]:
        return lambda current: self.pointing(current, to)

    def plan(self, decide: Callable[[Alias], Alias]) -> _Plan | None:
        return _recent_plan(self.context, (self.owner, "demo", "web"), self.key, decide)  # type: ignore[arg-type]

    async def known(self, bucket: str, key: str, revision: int | None) -> None:
        """Until the followed store of ``bucket`` knows ``key`` at ``revision`` or later
        (None: until it does not know the key)."""
        store = getattr(self.context, bucket)
        async with asyncio.timeout(5):
            while True:
                known = store.recent(key)
                if revision is None and known is None:
                    return
                if revision is not None and known is not None and known.revision >= revision:
                    return
                await asyncio.sleep(0.01)


@pytest.fixture
async def world(private_js: JetStreamContext) -> AsyncIterator[World]:
    """v0 and v1 ready, the alias on v0, all of it known to the followed stores."""
    versions, owner, v1 = await ready_version(private_js)
    await ready_version(private_js, owner, "v0")
    deployments = await ResourceStore.open(private_js, DEPLOYMENTS_BUCKET, Deployment)
    await deployments.create(
        deployment_key(owner, "demo", "web"),
        Deployment(owner=owner, project="demo", name="web", targets=["local-eu"]),
    )
    aliases = await ResourceStore.open(private_js, ALIASES_BUCKET, Alias)
    key = alias_key(owner, "demo", "web", "production")
    followed = SimpleNamespace(
        deployments=await ResourceStore.open(private_js, DEPLOYMENTS_BUCKET, Deployment),
        versions=await ResourceStore.open(private_js, VERSIONS_BUCKET, Version),
        aliases=await ResourceStore.open(private_js, ALIASES_BUCKET, Alias),
        routers=RoutersBehindOn(-1),
        settings=SimpleNamespace(switch_wait_s=0.2),
    )
    world = World(followed, owner, versions, aliases, key)
    revision = await aliases.create(key, world.pointing(None, "v0"))
    connection = private_js._nc  # the one the stores' JetStream context uses
    ready: Callable[[Version], bool] = lambda v: v.status is VersionStatus.READY  # noqa: E731 - as the API holds them
    followers = [
        asyncio.create_task(followed.deployments.keep_current(connection)),
        asyncio.create_task(followed.versions.keep_current(connection, holds=ready)),
        asyncio.create_task(followed.aliases.keep_current(connection)),
    ]
    try:
        await world.known("aliases", key, revision)
        await world.known("versions", v1, 1)
        await world.known("deployments", deployment_key(owner, "demo", "web"), 1)
        yield world
    finally:
        for follower in followers:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


def _never() -> Callable[[], Awaitable[_Plan]]:
    async def plan_from_record() -> _Plan:
        raise AssertionError("the record was read")

    return plan_from_record


async def test_a_switch_the_process_knows_enough_for_is_written_without_reading(
    world: World,
) -> None:
    plan = world.plan(world.decide("v1"))
    assert plan is not None and plan.current is not None
    assert sorted(plan.held) == ["v1"]
    switch = await _write_plan(world.context, world.key, plan, _never(), False)  # type: ignore[arg-type]
    stored = await world.aliases.get(world.key)
    assert stored is not None and stored.revision == switch.revision
    assert stored.value.target.version == "v1"


async def test_a_plan_a_write_behind_is_planned_again_from_the_record(world: World) -> None:
    plan = world.plan(world.decide("v1"))
    assert plan is not None and plan.current is not None
    # Another API process switches the alias before this plan is written.
    moved = world.pointing(plan.current.value, "v0", by="other")
    await world.aliases.update(world.key, moved, plan.current.revision)
    asked: list[str] = []

    async def plan_from_record() -> _Plan:
        asked.append("record")
        current = await world.aliases.get(world.key)
        assert current is not None
        return _Plan(current=current, updated=world.pointing(current.value, "v1"), held={})

    await _write_plan(world.context, world.key, plan, plan_from_record, False)  # type: ignore[arg-type]
    assert asked == ["record"]
    stored = await world.aliases.get(world.key)
    assert stored is not None
    # Neither change is lost.
    assert [c.by for c in stored.value.history[-2:]] == ["other", "test"]
    assert stored.value.target.version == "v1"


async def test_a_conflict_on_the_plan_from_the_record_is_409(world: World) -> None:
    stale = await world.aliases.get(world.key)
    assert stale is not None
    moved = world.pointing(stale.value, "v1", by="other")
    await world.aliases.update(world.key, moved, stale.revision)

    async def plan_from_record() -> _Plan:  # read just before the other writer wrote
        return _Plan(current=stale, updated=world.pointing(stale.value, "v1"), held={})

    with pytest.raises(Problem) as refused:
        await _write_plan(world.context, world.key, None, plan_from_record, False)  # type: ignore[arg-type]
    assert refused.value.status == 409


async def test_the_record_decides_what_the_process_does_not_know_or_would_refuse(
    world: World,
) -> None:
    # A version it has never seen, or one that is not ready: the record says why.
    assert world.plan(world.decide("v9")) is None
    v1 = version_key(world.owner, "demo", "web", "v1")
    v0 = version_key(world.owner, "demo", "web", "v0")
    # Stopped by this process (as the API's stop route does): known at once, not ready.
    read = await world.context.versions.get(v1)
    assert read is not None
    stopping = read.value.model_copy(update={"status": VersionStatus.STOPPING})
    await world.context.versions.update(v1, stopping, read.revision)
    assert world.plan(world.decide("v1")) is None
    # Stopped by another: no longer held once the follow brings it.
    read = await world.versions.get(v0)
    assert read is not None
    stopping = read.value.model_copy(update={"status": VersionStatus.STOPPING})
    await world.versions.update(v0, stopping, read.revision)
    await world.known("versions", v0, None)
    assert world.plan(world.decide("v0")) is None


async def test_an_alias_or_deployment_it_does_not_know_is_read_from_the_record(
    world: World,
) -> None:
    staging = replace(world, key=alias_key(world.owner, "demo", "web", "staging"))
    assert staging.plan(staging.decide("v1")) is None  # a new alias
    nobody = replace(world, owner="nobody", key=alias_key("nobody", "demo", "web", "production"))
    assert nobody.plan(nobody.decide("v1")) is None  # no such deployment known


def switch_to(world: World, to: str, *, force: bool = False) -> AliasSwitch:
    return AliasSwitch(
        owner=world.owner,
        project="demo",
        deployment="web",
        alias="production",
        target=AliasTarget(version=to),
        regions={},
        force=force,
        by="ci",
    )


async def test_a_switch_answers_the_alias_written_and_how_the_routers_applied_it(
    world: World,
) -> None:
    v1 = version_key(world.owner, "demo", "web", "v1")
    before = await world.versions.get(v1)
    assert before is not None
    switched = await switch_alias(world.context, switch_to(world, "v1"))  # type: ignore[arg-type]
    stored = await world.aliases.get(world.key)
    assert stored is not None and stored.revision == switched.revision
    assert switched.alias == stored.value and stored.value.target.version == "v1"
    assert switched.applied == Outcome(seconds=0.0, processes=2, lagging=[])
    held = await world.versions.get(v1)  # rewritten unchanged: a stop that read it fails
    assert held is not None and held.revision > before.revision and held.value == before.value


async def test_a_switch_a_router_does_not_apply_within_the_bound_names_it(world: World) -> None:
    revision = (await world.aliases.get(world.key)).revision  # type: ignore[union-attr]
    world.context.routers = RoutersBehindOn(revision + 1)  # the switch's own write
    switched = await switch_alias(world.context, switch_to(world, "v1"))  # type: ignore[arg-type]
    assert switched.revision == revision + 1
    assert switched.applied.lagging == ["stuck"]


async def test_a_rollback_points_back_and_is_recorded_by_who_asked(world: World) -> None:
    await switch_alias(world.context, switch_to(world, "v1"))  # type: ignore[arg-type]
    rollback = AliasRollback(
        owner=world.owner,
        project="demo",
        deployment="web",
        alias="production",
        force=False,
        by="ops",
    )
    back = await roll_back_alias(world.context, rollback)  # type: ignore[arg-type]
    assert back.alias.target.version == "v0"
    assert (back.alias.history[-1].action, back.alias.history[-1].by) == ("rollback", "ops")
    missing = replace(rollback, alias="staging")
    with pytest.raises(Problem) as refused:
        await roll_back_alias(world.context, missing)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.slug) == (404, "not-found")


@pytest.mark.parametrize("force", [False, True])
async def test_a_switch_to_a_stopped_version_is_refused_with_the_call_that_starts_it(
    world: World, force: bool
) -> None:
    key = version_key(world.owner, "demo", "web", "v1")
    await stop(world.versions, key)
    await world.known("versions", key, None)  # this process knows: the record decides
    with pytest.raises(Problem) as refused:
        await switch_alias(world.context, switch_to(world, "v1", force=force))  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.slug) == (409, "version-stopped")
    assert f"POST /v1/projects/{world.owner}/demo/deployments/web/versions/v1/start" in (
        refused.value.detail
    )
    assert refused.value.extra == {"stopped": ["v1"]}
    stored = await world.aliases.get(world.key)
    assert stored is not None and stored.value.target.version == "v0"


async def test_a_stop_landing_after_the_check_is_undone_with_the_call_that_starts_it(
    world: World,
) -> None:
    key = version_key(world.owner, "demo", "web", "v1")
    ready = await world.versions.get(key)
    await stop(world.versions, key)
    # This process still knew v1 ready when it planned (its follow a write behind): the
    # switch is written, the hold finds the stop, and the alias is pointed back.
    known = world.context.versions.recent
    world.context.versions.recent = lambda k: ready if k == key else known(k)
    with pytest.raises(Problem) as refused:
        await switch_alias(world.context, switch_to(world, "v1"))  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.slug) == (409, "version-stopped")
    assert "it points where it did before" in refused.value.detail
    assert f"POST /v1/projects/{world.owner}/demo/deployments/web/versions/v1/start" in (
        refused.value.detail
    )
    alias = await world.aliases.get(world.key)
    assert alias is not None and alias.value.target.version == "v0"
