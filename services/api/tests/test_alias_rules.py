"""The alias rules, without I/O: which versions an alias may point at, what a change and a
rollback record, and which versions a switch holds."""

from __future__ import annotations

import pytest

from dockyard_api.alias_rules import (
    HISTORY_LIMIT,
    NothingToRollBack,
    Refusal,
    alias_after_rollback,
    alias_after_set,
    alias_pointed_back,
    held_statuses,
    refusal,
    why_not_held,
)
from dockyard_common import Alias, AliasTarget, CodeRef, EndpointSpec, Version, VersionStatus


def version(name: str, status: VersionStatus) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        status=status,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="a:b")],
        targets=["local-eu"],
    )


def pointed(current: Alias | None, to: str, by: str = "ci") -> Alias:
    return alias_after_set(
        current,
        owner="acme",
        project="demo",
        deployment="web",
        name="production",
        target=AliasTarget(version=to),
        regions={},
        by=by,
    )


def test_ready_versions_are_not_refused() -> None:
    targets = [AliasTarget(weights={"v1": 90, "v2": 10})]
    found = {"v1": version("v1", VersionStatus.READY), "v2": version("v2", VersionStatus.READY)}
    assert refusal(targets, found, force=False) is None


def test_a_missing_version_is_refused_before_a_stopped_or_unready_one() -> None:
    targets = [AliasTarget(version="v1"), AliasTarget(weights={"v2": 50, "v3": 50})]
    found = {"v1": None, "v2": version("v2", VersionStatus.STOPPED), "v3": None}
    assert refusal(targets, found, force=True) == Refusal(
        "missing", {"v1": "does not exist", "v3": "does not exist"}
    )


@pytest.mark.parametrize("force", [False, True])
def test_a_stopped_or_stopping_version_is_refused_forced_or_not(force: bool) -> None:
    targets = [AliasTarget(weights={"v1": 50, "v2": 50}), AliasTarget(version="v3")]
    found = {
        "v1": version("v1", VersionStatus.STOPPING),
        "v2": version("v2", VersionStatus.BUILDING),
        "v3": version("v3", VersionStatus.STOPPED),
    }
    assert refusal(targets, found, force) == Refusal(
        "stopped", {"v1": "is stopping", "v3": "is stopped"}
    )


def test_a_version_not_ready_is_refused_unless_forced() -> None:
    targets = [AliasTarget(version="v1")]
    found = {"v1": version("v1", VersionStatus.FAILED)}
    assert refusal(targets, found, force=False) == Refusal("not-ready", {"v1": "is failed"})
    assert refusal(targets, found, force=True) is None


def test_a_switch_holds_ready_versions_or_forced_any_but_stopped() -> None:
    assert held_statuses(force=False) == {VersionStatus.READY}
    forced = held_statuses(force=True)
    assert VersionStatus.BUILDING in forced and VersionStatus.FAILED in forced
    assert VersionStatus.STOPPING not in forced and VersionStatus.STOPPED not in forced
    assert why_not_held(VersionStatus.STOPPING) == "was stopped"
    assert why_not_held(VersionStatus.FAILED) == "became failed"


def test_a_rollback_walks_back_to_the_latest_other_target_and_twice_returns() -> None:
    alias = pointed(pointed(pointed(None, "v1"), "v2"), "v2")
    back = alias_after_rollback(alias, "ops")
    assert back.target.version == "v1"
    assert (back.history[-1].action, back.history[-1].by) == ("rollback", "ops")
    assert alias_after_rollback(back, "ops").target.version == "v2"


def test_an_alias_that_never_pointed_elsewhere_has_nothing_to_roll_back() -> None:
    with pytest.raises(NothingToRollBack, match="never pointed anywhere else"):
        alias_after_rollback(pointed(None, "v1"), "ops")


def test_history_keeps_the_last_changes_only() -> None:
    alias = pointed(None, "v0")
    for n in range(HISTORY_LIMIT + 5):
        alias = pointed(alias, f"v{n % 3}")
    assert len(alias.history) == HISTORY_LIMIT
    assert alias.history[-1].target.version == f"v{(HISTORY_LIMIT + 4) % 3}"


def test_a_switch_undone_is_recorded_as_the_platforms_rollback() -> None:
    before = pointed(None, "v1")
    switched = pointed(before, "v2")
    back = alias_pointed_back(switched, before, "platform")
    assert back.target.version == "v1"
    assert [(c.target.version, c.action, c.by) for c in back.history] == [
        ("v1", "set", "ci"),
        ("v2", "set", "ci"),
        ("v1", "rollback", "platform"),
    ]
