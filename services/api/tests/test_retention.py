"""Warm rollback retention: which versions keep running, and the sweep that stops the rest."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from dockyard_api.retention import RetentionPolicy, retained_versions, versions_to_stop
from dockyard_api.sweeper import sweep_once
from dockyard_common import (
    Alias,
    AliasChange,
    AliasTarget,
    CodeRef,
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

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = "acme"


def version(name: str, minute: int, owner: str = OWNER) -> Version:
    return Version(
        owner=owner,
        project="demo",
        deployment="web",
        name=name,
        status=VersionStatus.READY,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="a:b")],
        targets=["local-eu"],
        created_at=T0 + timedelta(minutes=minute),
    )


def alias(changes: list[tuple[int, str | dict[str, int]]], owner: str = OWNER) -> Alias:
    """An alias whose history is ``(minute, version or weights)``, oldest first."""
    history = [
        AliasChange(
            target=AliasTarget(version=to) if isinstance(to, str) else AliasTarget(weights=to),
            action="set",
            by="test",
            at=T0 + timedelta(minutes=minute),
        )
        for minute, to in changes
    ]
    return Alias(
        owner=owner,
        project="demo",
        deployment="web",
        name="production",
        target=history[-1].target,
        history=history,
    )


POLICY = RetentionPolicy(keep_changes=2, grace=timedelta(minutes=10))


def test_the_current_versions_and_those_of_the_last_changes_are_retained() -> None:
    production = alias([(10, "v1"), (20, "v2"), (30, {"v3": 90, "v4": 10})])
    assert retained_versions([production], keep_changes=2) == {"v2", "v3", "v4"}


def test_older_unaliased_versions_stop_after_the_grace_but_never_the_newest() -> None:
    versions = [version(f"v{n}", n) for n in range(1, 6)]
    production = alias([(10, "v1"), (20, "v2"), (30, "v3")])
    # v1 left the window when v3 was set (minute 30); v4 was never aliased (minute 4);
    # v5 is the newest version.
    assert versions_to_stop(versions, [production], POLICY, T0 + timedelta(minutes=35)) == [
        versions[3]
    ]
    stopped = versions_to_stop(versions, [production], POLICY, T0 + timedelta(minutes=40))
    assert [v.name for v in stopped] == ["v1", "v4"]


def test_re_applying_the_same_pointing_keeps_the_rollback_target_warm() -> None:
    # CI sets production=v2 on every run: the rollback target, v1, must stay retained.
    production = alias([(10, "v1"), (20, "v2"), (21, "v2"), (22, "v2"), (23, "v2")])
    assert retained_versions([production], keep_changes=2) == {"v1", "v2"}
    versions = [version("v1", 1), version("v2", 2), version("v3", 3)]
    assert versions_to_stop(versions, [production], POLICY, T0 + timedelta(days=1)) == []


def test_stopped_versions_are_not_stopped_again() -> None:
    old = version("v1", 1).model_copy(update={"status": VersionStatus.STOPPED})
    assert versions_to_stop([old, version("v2", 2)], [], POLICY, T0 + timedelta(days=1)) == []


async def test_a_sweep_stops_only_what_retention_lets_go(private_js: JetStreamContext) -> None:
    js = private_js  # a scheduler on the shared server would carry the stops out
    owner = f"r{secrets.token_hex(4)}"
    deployments = await ResourceStore.open(js, DEPLOYMENTS_BUCKET, Deployment)
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    aliases = await ResourceStore.open(js, ALIASES_BUCKET, Alias)
    deployment = Deployment(owner=owner, project="demo", name="web", targets=["local-eu"])
    await deployments.create(deployment_key(owner, "demo", "web"), deployment)
    for n in range(1, 5):
        await versions.create(
            version_key(owner, "demo", "web", f"v{n}"), version(f"v{n}", n, owner)
        )
    await aliases.create(
        alias_key(owner, "demo", "web", "production"),
        alias([(10, "v1"), (20, "v2"), (30, "v3")], owner),
    )
    short = RetentionPolicy(keep_changes=1, grace=timedelta(seconds=0.5))
    # Just after the last change: v1 left the window at minute 20, v2 0.2 s ago (in grace).
    soon = T0 + timedelta(minutes=30, seconds=0.2)
    first = await sweep_once(deployments, versions, aliases, short, soon)
    assert first == [version_key(owner, "demo", "web", "v1")]
    later = await sweep_once(deployments, versions, aliases, short, T0 + timedelta(minutes=31))
    assert later == [version_key(owner, "demo", "web", "v2")]
    statuses = {
        n: (await versions.get(version_key(owner, "demo", "web", n))).value.status  # type: ignore[union-attr]
        for n in ("v1", "v2", "v3", "v4")
    }
    assert statuses == {
        "v1": VersionStatus.STOPPING,
        "v2": VersionStatus.STOPPING,
        "v3": VersionStatus.READY,  # production points to it
        "v4": VersionStatus.READY,  # the newest version
    }
    assert await sweep_once(deployments, versions, aliases, short, T0 + timedelta(minutes=32)) == []
