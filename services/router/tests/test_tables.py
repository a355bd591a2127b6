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


def endpoint_route(
    version: str, endpoint: str, state: WorkloadState, target: str = "local-eu"
) -> Route:
    serving = state is WorkloadState.READY
    return Route(
        key=f"acme/demo/web/{version}/{endpoint}",
        target=target,
        region="eu",
        upstreams=["http://127.0.1.1:9"] if serving else [],
        state=state,
    )


def known_table() -> RouteTable:
    """acme/demo/web: v1 ready (predict, explain), v0 stopped, v2 deploying, v3 failed;
    alias production → v1, alias old → v0; and another owner's deployment."""
    table = RouteTable()
    for endpoint in ("predict", "explain"):
        table.put(endpoint_route("v1", endpoint, WorkloadState.READY))
        for target in ("local-eu", "local-us"):
            table.put(endpoint_route("v0", endpoint, WorkloadState.STOPPED, target))
    table.put(endpoint_route("v2", "predict", WorkloadState.DEPLOYING))
    table.put(endpoint_route("v3", "predict", WorkloadState.FAILED))
    table.put_alias(an_alias(AliasTarget(version="v1")))
    table.put_alias(an_alias(AliasTarget(version="v0"), name="old"))
    table.put(
        Route(
            key="rival/secret/model/v7/predict",
            target="local-eu",
            region="eu",
            upstreams=["http://127.0.1.1:7"],
        )
    )
    return table


def why(table: RouteTable, path: str, points_to: str = "") -> tuple[int, str, str, int | None]:
    assert table.resolve(path, "eu", draw=0.0) is None
    miss = table.explain(path, "eu", draw=0.0)
    # Nothing the caller did not name (but the version an alias it named points to, which
    # every answer through the alias says in X-Dockyard-Version): not another owner's
    # names, not another version or alias.
    for hidden in ("rival", "secret", "v7", "production", "old", "v2", "v3"):
        if hidden not in path and hidden != points_to:
            assert hidden not in miss.detail, miss.detail
    return miss.status, miss.slug, miss.detail, miss.retry_after_s


def test_an_unknown_deployment_is_named_as_given() -> None:
    assert why(known_table(), "/acme/demo/wbe/v1/predict/x") == (
        404,
        "unknown-deployment",
        "no deployment acme/demo/wbe serves here: check the owner, project and deployment "
        "in the path",
        None,
    )


def test_a_path_too_short_says_what_a_model_path_is() -> None:
    status, slug, detail, _ = why(known_table(), "/favicon.ico")
    assert (status, slug) == (404, "not-found")
    assert detail.startswith("a model is called at /<owner>/<project>/<deployment>/")


def test_an_unknown_version_or_alias_is_told_apart_from_an_unknown_deployment() -> None:
    assert why(known_table(), "/acme/demo/web/prodution/predict/x") == (
        404,
        "unknown-version",
        "deployment acme/demo/web has no version or alias named prodution",
        None,
    )


def test_a_typo_in_the_endpoint_lists_the_endpoints_of_the_version_named() -> None:
    assert why(known_table(), "/acme/demo/web/v1/predcit/x") == (
        404,
        "unknown-endpoint",
        "version v1 of acme/demo/web has no endpoint predcit (its endpoints: explain, predict)",
        None,
    )
    assert why(known_table(), "/acme/demo/web/production/predcit/x", points_to="v1") == (
        404,
        "unknown-endpoint",
        "alias production of acme/demo/web points to version v1, which has no endpoint "
        "predcit (its endpoints: explain, predict)",
        None,
    )


def test_a_stopped_version_is_gone_and_an_alias_to_it_is_unavailable() -> None:
    assert why(known_table(), "/acme/demo/web/v0/predict/x") == (
        410,
        "version-stopped",
        "version v0 of acme/demo/web was stopped and serves no more",
        None,
    )
    # Even with a typo in the endpoint: that it was stopped is what matters.
    assert why(known_table(), "/acme/demo/web/v0/predcit/x")[:2] == (410, "version-stopped")
    assert why(known_table(), "/acme/demo/web/old/predict/x", points_to="v0") == (
        503,
        "version-stopped",
        "alias old of acme/demo/web points to version v0, which was stopped",
        None,
    )


def test_an_endpoint_without_a_ready_replica_is_unavailable_and_retried_while_starting() -> None:
    assert why(known_table(), "/acme/demo/web/v2/predict/x") == (
        503,
        "not-ready",
        "version v2 of acme/demo/web: endpoint predict has no ready replica (deploying)",
        5,
    )
    assert why(known_table(), "/acme/demo/web/v3/predict/x") == (
        503,
        "not-ready",
        "version v3 of acme/demo/web: endpoint predict has no ready replica (failed)",
        None,
    )
    table = known_table()
    table.put_alias(an_alias(AliasTarget(version="v2"), name="canary"))
    assert why(table, "/acme/demo/web/canary/predict/x", points_to="v2") == (
        503,
        "not-ready",
        "alias canary of acme/demo/web points to version v2, whose endpoint predict has no "
        "ready replica (deploying)",
        5,
    )


def test_an_alias_to_a_version_that_never_ran_here_does_not_serve() -> None:
    table = known_table()
    table.put_alias(an_alias(AliasTarget(version="v9"), name="next"))
    assert why(table, "/acme/demo/web/next/predict/x") == (
        503,
        "not-serving",
        "alias next of acme/demo/web points to version v9, which does not serve",
        None,
    )


def test_a_deployment_known_only_by_its_alias_is_not_unknown() -> None:
    table = RouteTable()
    table.put_alias(an_alias(AliasTarget(version="v1")))
    assert why(table, "/acme/demo/web/staging/predict/")[:2] == (404, "unknown-version")


def test_a_route_that_stops_serving_is_still_known_and_serves_again_when_ready() -> None:
    table = RouteTable()
    table.put(endpoint_route("v1", "predict", WorkloadState.READY))
    table.put(endpoint_route("v1", "predict", WorkloadState.FAILED))
    assert table.routes == {}
    assert [r.state for r in table.known_routes()] == [WorkloadState.FAILED]
    table.put(endpoint_route("v1", "predict", WorkloadState.READY))
    assert table.resolve("/acme/demo/web/v1/predict/", "eu", draw=0.0) is not None
    assert len(table.known_routes()) == 1


def test_a_table_is_loaded_once_it_takes_whole_tables() -> None:
    table = RouteTable(loaded=False)
    table.put(endpoint_route("v1", "predict", WorkloadState.READY))  # one event: not whole
    assert not table.loaded
    table.replace_with(known_table())
    assert table.loaded
    assert table.explain("/acme/demo/web/v0/predict/", "eu", 0.0).status == 410
