"""Route resolution and upstream URLs: pure decisions, tested without I/O."""

from __future__ import annotations

from datetime import timedelta

import httptools
import pytest

from dockyard_common import Alias, AliasTarget, EndpointState, WorkloadState
from dockyard_router.proxy import host_header, request_target
from dockyard_router.tables import (
    Route,
    RouteTable,
    client_draw,
    pick_version,
    route_from_state,
    split_request_path,
)

KEY = "acme/demo/web/v1/predict"


def route(target: str, region: str, *upstreams: str) -> Route:
    return Route(key=KEY, target=target, region=region, upstreams=list(upstreams))


def test_a_request_path_splits_into_deployment_version_endpoint_and_encoded_rest() -> None:
    path = split_request_path("/acme/demo/web/v1/predict/a%2Fb/c?x")
    assert path is not None
    assert (path.route_key(path.name), path.rest) == (KEY, "a%2Fb/c?x")
    assert path.prefix == "/acme/demo/web/v1/predict"
    bare = split_request_path("/acme/demo/web/v1/predict")
    assert bare is not None and bare.rest == ""
    assert split_request_path("/acme/demo/web/v1") is None
    assert split_request_path("/acme//web/v1/predict/") is None


def test_own_region_upstreams_come_first_then_the_others() -> None:
    table = RouteTable()
    table.put(route("local-us", "us", "http://127.0.2.1:9"))
    table.put(route("local-eu", "eu", "http://127.0.1.1:9"))
    resolved = table.resolve("/acme/demo/web/v1/predict/x", own_region="eu", draw=0.5)
    assert resolved is not None
    assert resolved.upstreams == [("eu", "http://127.0.1.1:9"), ("us", "http://127.0.2.1:9")]
    us_first = table.resolve("/acme/demo/web/v1/predict/x", own_region="us", draw=0.5)
    assert us_first is not None and us_first.upstreams[0][0] == "us"


def test_failover_follows_the_configured_order_and_drained_regions_come_last() -> None:
    table = RouteTable(region_order=("us", "ap"))
    for target, region in (("t-ap", "ap"), ("t-us", "us"), ("t-eu", "eu"), ("t-sa", "sa")):
        table.put(route(target, region, f"http://{region}:9"))
    path = "/acme/demo/web/v1/predict/x"

    def regions(own: str) -> list[str]:
        resolved = table.resolve(path, own_region=own, draw=0.5)
        assert resolved is not None
        return [region for region, _ in resolved.upstreams]

    # The preferred region, then the configured order, then the rest by name.
    assert regions("eu") == ["eu", "us", "ap", "sa"]
    assert regions("sa") == ["sa", "us", "ap", "eu"]
    table.drained = frozenset({"us"})  # a change the cached order must not outlive
    assert regions("eu") == ["eu", "ap", "sa"]
    table.put(route("t-eu", "eu"))  # eu stops serving
    assert regions("eu") == ["ap", "sa"]


def test_a_route_without_upstreams_removes_the_target() -> None:
    table = RouteTable()
    table.put(route("local-eu", "eu", "http://127.0.1.1:9"))
    table.put(route("local-eu", "eu"))
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5) is None


def test_only_a_ready_endpoint_state_yields_upstreams() -> None:
    state = EndpointState(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target="local-eu",
        region="eu",
        state=WorkloadState.READY,
        upstreams=["http://127.0.1.1:9"],
    )
    assert route_from_state(state).upstreams == ["http://127.0.1.1:9"]
    failed = state.model_copy(update={"state": WorkloadState.FAILED})
    assert route_from_state(failed).upstreams == []


@pytest.mark.parametrize(
    "rest", ["/169.254.169.254/latest", "http://evil/x", "%2F%2Fevil", "@evil/x", "..//evil"]
)
def test_no_request_path_changes_the_upstream_host_or_scheme(rest: str) -> None:
    target = request_target(rest, b"q=1")
    host = host_header("http://127.0.1.1:8000")
    assert target.startswith(b"/") and not target.startswith(b"//" + host)
    assert b" " not in target and b"\r" not in target and b"\n" not in target
    # What the upstream's server makes of the request line: a path on itself.
    url = httptools.parse_url(b"http://" + host + target)
    assert (url.schema, url.host, url.port) == (b"http", b"127.0.1.1", 8000)
    assert url.path == b"/" + rest.encode() and url.query == b"q=1"


def an_alias(target: AliasTarget, **changes: object) -> Alias:
    fields: dict[str, object] = {
        "owner": "acme",
        "project": "demo",
        "deployment": "web",
        "name": "production",
        "target": target,
    }
    fields.update(changes)
    return Alias.model_validate(fields)


def serving(*versions: str) -> RouteTable:
    table = RouteTable()
    for version in versions:
        table.put(
            Route(
                key=f"acme/demo/web/{version}/predict",
                target="local-eu",
                region="eu",
                upstreams=[f"http://127.0.1.1:{len(version)}"],
            )
        )
    return table


def test_an_alias_resolves_to_its_version_and_says_so() -> None:
    table = serving("v1", "v2")
    table.put_alias(an_alias(AliasTarget(version="v2")))
    resolved = table.resolve("/acme/demo/web/production/predict/x", "eu", draw=0.0)
    assert resolved is not None
    assert (resolved.version, resolved.alias, resolved.rest) == ("v2", "production", "x")
    assert resolved.prefix == "/acme/demo/web/production/predict"


def test_weights_split_the_draw_in_version_name_order() -> None:
    canary = AliasTarget(weights={"v1": 90, "v2": 10})
    assert pick_version(canary, 0.0) == "v1"
    assert pick_version(canary, 0.899) == "v1"
    assert pick_version(canary, 0.9) == "v2"
    assert pick_version(canary, 0.9999) == "v2"
    assert pick_version(AliasTarget(weights={"v1": 100, "v2": 0}), 0.9999) == "v1"


def test_a_client_key_always_lands_on_the_same_side() -> None:
    assert client_draw("user-42") == client_draw("user-42")
    assert 0.0 <= client_draw("user-42") < 1.0
    draws = [client_draw(f"user-{i}") for i in range(1000)]
    assert 0.05 < sum(d < 0.1 for d in draws) / 1000 < 0.15


def test_a_region_override_applies_only_in_its_region() -> None:
    table = serving("v1", "v2")
    table.put_alias(an_alias(AliasTarget(version="v1"), regions={"us": AliasTarget(version="v2")}))
    eu = table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    us = table.resolve("/acme/demo/web/production/predict/", "us", draw=0.0)
    assert eu is not None and eu.version == "v1"
    assert us is not None and us.version == "v2"


def test_an_older_alias_never_replaces_a_newer_one() -> None:
    table = serving("v1", "v2")
    newer = an_alias(AliasTarget(version="v2"))
    older = an_alias(AliasTarget(version="v1"), updated_at=newer.updated_at - timedelta(seconds=1))
    assert table.put_alias(newer)
    assert not table.put_alias(older)
    resolved = table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    assert resolved is not None and resolved.version == "v2"


def test_the_state_of_record_order_wins_over_clocks_that_disagree() -> None:
    table = serving("v1", "v2")
    first = an_alias(AliasTarget(version="v1"))
    # Written later (revision 8) by an API process whose clock is a second behind.
    later = an_alias(AliasTarget(version="v2"), updated_at=first.updated_at - timedelta(seconds=1))
    assert table.put_alias(first, 7)
    assert table.put_alias(later, 8)
    assert not table.put_alias(first, 7)  # redelivered
    resolved = table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    assert resolved is not None and resolved.version == "v2"
    assert table.alias_revisions["acme/demo/web/production"] == 8


def test_a_reload_from_an_older_copy_keeps_the_aliases_held_at_later_revisions() -> None:
    table = serving("v1", "v2")
    table.put_alias(an_alias(AliasTarget(version="v2")), 9)
    stale = serving("v1", "v2")  # what Redis held before the change reached it
    stale.put_alias(an_alias(AliasTarget(version="v1")), 8)
    table.replace_with(stale)
    resolved = table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    assert resolved is not None and resolved.version == "v2"
    assert table.alias_revisions["acme/demo/web/production"] == 9
