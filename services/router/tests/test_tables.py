"""Route resolution and upstream URLs: pure decisions, tested without I/O."""

from __future__ import annotations

import httptools
import pytest

from dockyard_common import AliasTarget, VersionStatus, WorkloadState
from dockyard_router.paths import client_draw, pick_version, split_request_path
from dockyard_router.proxy import host_header, request_target
from dockyard_router.routed import RoutedAlias, RoutedEndpoint, RoutedRegion, RoutedVersion
from dockyard_router.tables import RouteTable, routes_of

KEY = "acme/demo/web/v1/predict"


def state(
    target: str,
    region: str,
    *upstreams: str,
    endpoint: str = "predict",
    state: WorkloadState | None = None,
) -> RoutedEndpoint:
    """An endpoint's state on a target: ready with upstreams, else as given (failed)."""
    return RoutedEndpoint(
        endpoint=endpoint,
        target=target,
        region=region,
        state=state or (WorkloadState.READY if upstreams else WorkloadState.FAILED),
        upstreams=list(upstreams),
    )


def version(
    name: str, *states: RoutedEndpoint, status: VersionStatus = VersionStatus.READY
) -> RoutedVersion:
    """Version ``name`` of acme/demo/web as its record holds it."""
    return RoutedVersion(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        status=status,
        endpoint_states=list(states),
    )


def an_alias(name: str, points_to: str) -> RoutedAlias:
    """Alias ``name`` of acme/demo/web pointing to version ``points_to``."""
    return RoutedAlias(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        target=AliasTarget(version=points_to),
    )


class Record:
    """Writes to a table as the feeds do, each at the next revision."""

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table or RouteTable()
        self.revision = 0

    def next(self) -> int:
        self.revision += 1
        return self.revision

    def version(self, written: RoutedVersion) -> RouteTable:
        assert self.table.put_version(written.table_key, self.next(), written)
        return self.table

    def alias(self, target: AliasTarget, name: str = "production", **regions: AliasTarget) -> None:
        alias = RoutedAlias(
            owner="acme",
            project="demo",
            deployment="web",
            name=name,
            target=target,
            regions=regions,
        )
        assert self.table.put_alias(alias.table_key, self.next(), alias)

    def region(self, name: str, *, drained: bool) -> None:
        assert self.table.put_region(name, self.next(), RoutedRegion(name=name, drained=drained))


def table_of(*states: RoutedEndpoint, region_order: tuple[str, ...] = ()) -> RouteTable:
    """A table holding version v1 with these endpoint states."""
    return Record(RouteTable(region_order=region_order)).version(version("v1", *states))


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
    table = table_of(
        state("local-us", "us", "http://127.0.2.1:9"), state("local-eu", "eu", "http://127.0.1.1:9")
    )
    resolved = table.resolve("/acme/demo/web/v1/predict/x", own_region="eu", draw=0.5)
    assert resolved is not None
    assert resolved.upstreams == [("eu", "http://127.0.1.1:9"), ("us", "http://127.0.2.1:9")]
    us_first = table.resolve("/acme/demo/web/v1/predict/x", own_region="us", draw=0.5)
    assert us_first is not None and us_first.upstreams[0][0] == "us"


def test_failover_follows_the_configured_order_and_drained_regions_come_last() -> None:
    places = {"ap": "t-ap", "us": "t-us", "eu": "t-eu", "sa": "t-sa"}
    record = Record(RouteTable(region_order=("us", "ap")))
    record.version(version("v1", *(state(t, r, f"http://{r}:9") for r, t in places.items())))
    path = "/acme/demo/web/v1/predict/x"

    def regions(own: str) -> list[str]:
        resolved = record.table.resolve(path, own_region=own, draw=0.5)
        assert resolved is not None
        return [region for region, _ in resolved.upstreams]

    # The preferred region, then the configured order, then the rest by name.
    assert regions("eu") == ["eu", "us", "ap", "sa"]
    assert regions("sa") == ["sa", "us", "ap", "eu"]
    record.region("us", drained=True)  # a change the cached order must not outlive
    assert regions("eu") == ["eu", "ap", "sa"]
    # eu stops serving (its endpoint failed there)
    record.version(
        version(
            "v1",
            *(state(t, r, *([] if r == "eu" else [f"http://{r}:9"])) for r, t in places.items()),
        )
    )
    assert regions("eu") == ["ap", "sa"]
    record.region("us", drained=False)
    assert regions("eu") == ["us", "ap", "sa"]


def test_a_drained_region_serves_when_no_other_region_can() -> None:
    record = Record()
    record.version(version("v1", state("local-eu", "eu", "http://eu:9")))
    record.region("eu", drained=True)
    resolved = record.table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5)
    assert resolved is not None and resolved.upstreams == [("eu", "http://eu:9")]
    assert record.table.drained == {"eu"}


def test_only_a_ready_endpoint_of_a_version_not_stopped_has_upstreams() -> None:
    ready = state("local-eu", "eu", "http://127.0.1.1:9")
    failed = state("local-us", "us", "http://127.0.2.1:9", state=WorkloadState.FAILED)
    routes = routes_of(version("v1", ready, failed))
    assert [(r.key, r.region, r.upstreams, r.state) for r in routes] == [
        (KEY, "eu", ("http://127.0.1.1:9",), WorkloadState.READY),
        (KEY, "us", (), WorkloadState.FAILED),
    ]
    # Stopped: whatever its endpoints' last reports said, nothing of it serves.
    stopped = routes_of(version("v1", ready, status=VersionStatus.STOPPED))
    assert [(r.upstreams, r.state) for r in stopped] == [((), WorkloadState.STOPPED)]


def test_a_version_write_replaces_every_route_of_the_version() -> None:
    record = Record()
    record.version(
        version(
            "v1",
            state("local-eu", "eu", "http://eu:1"),
            state("local-us", "us", "http://us:1"),
            state("local-eu", "eu", "http://eu:2", endpoint="explain"),
        )
    )
    record.version(version("v1", state("local-us", "us", "http://us:3")))
    table = record.table
    predict = table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5)
    assert predict is not None and predict.upstreams == [("us", "http://us:3")]
    assert table.resolve("/acme/demo/web/v1/explain/", own_region="eu", draw=0.5) is None
    assert sorted(table.routes) == [f"{KEY}|local-us"]


def test_routes_follow_the_record_revision_not_the_order_writes_arrive_in() -> None:
    table = RouteTable()
    ready = version("v1", state("local-eu", "eu", "http://eu:1"))
    failed = version("v1", state("local-eu", "eu"))
    assert table.put_version("acme/demo/web/v1", 7, failed)
    # An older write (redelivered, or from a mirror behind the record) changes nothing.
    assert not table.put_version("acme/demo/web/v1", 5, ready)
    assert not table.put_version("acme/demo/web/v1", 7, ready)
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5) is None
    assert table.put_version("acme/demo/web/v1", 8, ready)
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5) is not None
    # Deleted from the record: gone, and an older write does not bring it back.
    assert table.put_version("acme/demo/web/v1", 9, None)
    assert not table.put_version("acme/demo/web/v1", 8, ready)
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5) is None
    assert table.explain("/acme/demo/web/v1/predict/", "eu", 0.0).slug == "unknown-deployment"


def test_a_version_rewritten_unchanged_moves_only_its_revision() -> None:
    """An alias switch rewrites the versions it names as they are: nothing to apply."""
    table = RouteTable()
    ready = version("v1", state("local-eu", "eu", "http://eu:1"))
    assert table.put_version("acme/demo/web/v1", 3, ready)
    before = table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5)
    assert not table.put_version("acme/demo/web/v1", 4, version("v1", *ready.endpoint_states))
    assert table.version_revisions["acme/demo/web/v1"] == 4
    assert not table.put_version("acme/demo/web/v1", 4, version("v1", state("local-eu", "eu")))
    after = table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5)
    assert before is not None and after is not None and after.upstreams is before.upstreams


def test_what_a_feed_did_not_see_while_catching_up_is_forgotten() -> None:
    record = Record()
    record.version(version("v1", state("local-eu", "eu", "http://eu:1")))
    record.version(version("v2", state("local-eu", "eu", "http://eu:2")))
    record.alias(AliasTarget(version="v1"))
    record.alias(AliasTarget(version="v2"), name="staging")
    record.region("eu", drained=True)
    table = record.table
    table.keep_versions({"acme/demo/web/v2"})
    table.keep_aliases({"acme/demo/web/staging"})
    table.keep_regions(set())
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu", draw=0.5) is None
    assert table.resolve("/acme/demo/web/production/predict/", own_region="eu", draw=0.5) is None
    assert table.resolve("/acme/demo/web/staging/predict/", own_region="eu", draw=0.5) is not None
    assert [key for key, _, _ in table.held_versions()] == ["acme/demo/web/v2"]
    assert table.drained == frozenset() and table.held_regions() == []


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


def serving(*names: str) -> Record:
    """A record whose versions ``names`` serve predict in eu."""
    record = Record()
    for name in names:
        record.version(version(name, state("local-eu", "eu", f"http://127.0.1.1:{len(name)}")))
    return record


def test_an_alias_resolves_to_its_version_and_says_so() -> None:
    record = serving("v1", "v2")
    record.alias(AliasTarget(version="v2"))
    resolved = record.table.resolve("/acme/demo/web/production/predict/x", "eu", draw=0.0)
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
    record = serving("v1", "v2")
    record.alias(AliasTarget(version="v1"), us=AliasTarget(version="v2"))
    eu = record.table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    us = record.table.resolve("/acme/demo/web/production/predict/", "us", draw=0.0)
    assert eu is not None and eu.version == "v1"
    assert us is not None and us.version == "v2"


def test_the_state_of_record_order_wins_over_writes_arriving_late() -> None:
    record = serving("v1", "v2")
    record.alias(AliasTarget(version="v1"))  # revision 3
    record.alias(AliasTarget(version="v2"))  # revision 4
    table = record.table
    # Redelivered, or from a mirror behind the record:
    assert not table.put_alias("acme/demo/web/production", 3, an_alias("production", "v1"))
    resolved = table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0)
    assert resolved is not None and resolved.version == "v2"
    assert table.alias_revisions["acme/demo/web/production"] == 4
    assert table.put_alias("acme/demo/web/production", 5, None)  # deleted
    assert table.resolve("/acme/demo/web/production/predict/", "eu", draw=0.0) is None


def known_table() -> RouteTable:
    """acme/demo/web: v1 ready (predict, explain), v0 stopped, v2 deploying, v3 failed, v4
    stopped before it ever deployed, v5 building; alias production → v1, alias old → v0;
    and another owner's deployment."""
    record = Record()
    both = ("predict", "explain")
    record.version(
        version("v1", *(state("local-eu", "eu", "http://127.0.1.1:9", endpoint=e) for e in both))
    )
    record.version(
        version(
            "v0",
            *(
                state(target, "eu", endpoint=e, state=WorkloadState.STOPPED)
                for e in both
                for target in ("local-eu", "local-us")
            ),
            status=VersionStatus.STOPPED,
        )
    )
    record.version(version("v2", state("local-eu", "eu", state=WorkloadState.DEPLOYING)))
    record.version(version("v3", state("local-eu", "eu", state=WorkloadState.FAILED)))
    record.version(version("v4", status=VersionStatus.STOPPED))
    record.version(version("v5", status=VersionStatus.BUILDING))
    record.alias(AliasTarget(version="v1"))
    record.alias(AliasTarget(version="v0"), name="old")
    rival = RoutedVersion(
        owner="rival",
        project="secret",
        deployment="model",
        name="v7",
        status=VersionStatus.READY,
        endpoint_states=[state("local-eu", "eu", "http://127.0.1.1:7")],
    )
    record.version(rival)
    return record.table


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
    assert table.put_alias("acme/demo/web/canary", 100, an_alias("canary", "v2"))
    assert why(table, "/acme/demo/web/canary/predict/x", points_to="v2") == (
        503,
        "not-ready",
        "alias canary of acme/demo/web points to version v2, whose endpoint predict has no "
        "ready replica (deploying)",
        5,
    )


def test_an_alias_to_a_version_that_never_ran_here_does_not_serve() -> None:
    table = known_table()
    assert table.put_alias("acme/demo/web/next", 100, an_alias("next", "v9"))
    assert why(table, "/acme/demo/web/next/predict/x") == (
        503,
        "not-serving",
        "alias next of acme/demo/web points to version v9, which does not serve",
        None,
    )


def test_a_deployment_known_only_by_its_alias_is_not_unknown() -> None:
    table = RouteTable()
    assert table.put_alias("acme/demo/web/production", 1, an_alias("production", "v1"))
    assert why(table, "/acme/demo/web/staging/predict/")[:2] == (404, "unknown-version")


def test_a_version_stopped_before_it_ever_deployed_reads_as_stopped() -> None:
    assert why(known_table(), "/acme/demo/web/v4/predict/x") == (
        410,
        "version-stopped",
        "version v4 of acme/demo/web was stopped and serves no more",
        None,
    )
    # One still building has not run anywhere: as unknown here as before it was made.
    assert why(known_table(), "/acme/demo/web/v5/predict/x")[:2] == (404, "unknown-version")


def test_a_route_that_stops_serving_is_still_known_and_serves_again_when_ready() -> None:
    record = Record()
    record.version(version("v1", state("local-eu", "eu", "http://127.0.1.1:9")))
    record.version(version("v1", state("local-eu", "eu")))
    table = record.table
    assert table.routes == {}
    assert why(table, "/acme/demo/web/v1/predict/")[:2] == (503, "not-ready")
    record.version(version("v1", state("local-eu", "eu", "http://127.0.1.1:9")))
    assert table.resolve("/acme/demo/web/v1/predict/", "eu", draw=0.0) is not None
    assert len(table.routes) == 1


def test_an_idle_endpoint_is_found_by_version_and_alias_own_region_first() -> None:
    idle = WorkloadState.IDLE
    record = Record(RouteTable())
    record.version(
        version("v1", state("local-us", "us", state=idle), state("local-eu", "eu", state=idle))
    )
    record.alias(AliasTarget(version="v1"))
    table = record.table
    path = "/acme/demo/web/v1/predict/x"
    assert table.resolve(path, "eu", 0.5) is None
    found = table.idle(path, "eu", 0.5)
    assert found is not None
    assert (found.key, found.version, found.endpoint, found.region) == (KEY, "v1", "predict", "eu")
    assert found.scope == ("acme", "demo", "web")
    by_alias = table.idle("/acme/demo/web/production/predict/", "us", 0.5)
    assert by_alias is not None and (by_alias.version, by_alias.region) == ("v1", "us")
    assert table.idle("/acme/demo/web/v1/other/", "eu", 0.5) is None


def test_an_endpoint_that_is_not_idle_is_not_held() -> None:
    table = table_of(state("local-eu", "eu", state=WorkloadState.DEPLOYING))
    assert table.idle("/acme/demo/web/v1/predict/", "eu", 0.5) is None
    assert table.idle("/acme/demo/web/v9/predict/", "eu", 0.5) is None
