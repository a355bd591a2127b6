"""Route resolution and upstream URLs: pure decisions, tested without I/O."""

from __future__ import annotations

import pytest

from dockyard_common import EndpointState, WorkloadState
from dockyard_router.proxy import upstream_url
from dockyard_router.tables import Route, RouteTable, route_from_state, split_request_path

KEY = "acme/demo/web/v1/predict"


def route(target: str, region: str, *upstreams: str) -> Route:
    return Route(key=KEY, target=target, region=region, upstreams=list(upstreams))


def test_a_request_path_splits_into_route_key_version_and_encoded_rest() -> None:
    assert split_request_path("/acme/demo/web/v1/predict/a%2Fb/c?x") == (KEY, "v1", "a%2Fb/c?x")
    assert split_request_path("/acme/demo/web/v1/predict") == (KEY, "v1", "")
    assert split_request_path("/acme/demo/web/v1") is None
    assert split_request_path("/acme//web/v1/predict/") is None


def test_own_region_upstreams_come_first_then_the_others() -> None:
    table = RouteTable()
    table.put(route("local-us", "us", "http://127.0.2.1:9"))
    table.put(route("local-eu", "eu", "http://127.0.1.1:9"))
    resolved = table.resolve("/acme/demo/web/v1/predict/x", own_region="eu")
    assert resolved is not None
    assert resolved.upstreams == [("eu", "http://127.0.1.1:9"), ("us", "http://127.0.2.1:9")]
    us_first = table.resolve("/acme/demo/web/v1/predict/x", own_region="us")
    assert us_first is not None and us_first.upstreams[0][0] == "us"


def test_a_route_without_upstreams_removes_the_target() -> None:
    table = RouteTable()
    table.put(route("local-eu", "eu", "http://127.0.1.1:9"))
    table.put(route("local-eu", "eu"))
    assert table.resolve("/acme/demo/web/v1/predict/", own_region="eu") is None


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
    url = upstream_url("http://127.0.1.1:8000", rest, "q=1")
    assert (url.scheme, url.host, url.port) == ("http", "127.0.1.1", 8000)
    assert url.raw_query_string == "q=1"
