"""The console's pure parts: the status grid, the traffic charts, the endpoint tester's URL
and headers, the timeline's lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from dockyard_api.console.charts import HEIGHT, ReplicaChange, replica_chart, traffic_charts
from dockyard_api.console.security import cookie_options
from dockyard_api.console.tester import SampleCall, curl_command, parse_headers
from dockyard_api.console.views import build_timings, grid, timeline_entry
from dockyard_common import Alias, AliasTarget, Version
from dockyard_common.traffic import DeploymentTraffic, EndpointTraffic

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def version(name: str, targets: list[str], states: list[tuple[str, str]]) -> Version:
    return Version.model_validate(
        {
            "owner": "acme",
            "project": "demo",
            "deployment": "web",
            "name": name,
            "status": "deploying",
            "code": {"blob": "sha256:" + "0" * 64},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
            "targets": targets,
            "endpoint_states": [
                {
                    "owner": "acme",
                    "project": "demo",
                    "deployment": "web",
                    "version": name,
                    "endpoint": "predict",
                    "target": target,
                    "region": target,
                    "state": state,
                    "upstreams": ["http://127.0.0.1:1"] if state == "ready" else [],
                }
                for target, state in states
            ],
        }
    )


def test_the_grid_has_a_column_per_endpoint_and_target_and_marks_what_a_version_lacks() -> None:
    v2 = version("v2", ["eu", "us"], [("eu", "ready")])
    v1 = version("v1", ["eu"], [("eu", "ready")])
    alias = Alias(
        owner="acme",
        project="demo",
        deployment="web",
        name="production",
        target=AliasTarget(weights={"v1": 90, "v2": 10}),
    )
    columns, rows = grid([v2, v1], [alias])
    assert columns == [("predict", "eu"), ("predict", "us")]
    assert [c.state for c in rows[0].cells] == ["ready", "waiting"]
    assert [c.state for c in rows[1].cells] == ["ready", "—"]
    assert rows[0].cells[0].replicas == 1
    assert rows[0].aliases == rows[1].aliases == ["production"]


def report(
    at: datetime, version: str, region: str, requests: int, errors: int = 0
) -> DeploymentTraffic:
    latency = [0] * 13
    latency[2] = requests  # every answer under 5 ms
    return DeploymentTraffic(
        owner="acme",
        project="demo",
        deployment="web",
        router="r1",
        region=region,
        window_end=at,
        window_s=1.0,
        endpoints=[
            EndpointTraffic(
                version=version,
                endpoint="predict",
                region=region,
                requests=requests,
                errors=errors,
                latency_ms=latency,
            )
        ],
    )


def test_a_burst_raises_the_last_point_of_its_version_and_region() -> None:
    charts = traffic_charts(
        [
            report(NOW - timedelta(seconds=5), "v1", "eu", 60, errors=6),
            report(NOW - timedelta(minutes=30), "v2", "us", 6),
            report(NOW - timedelta(hours=2), "v1", "eu", 1000),
        ],  # older than the hour: left out
        NOW,
    )
    assert (charts.requests, charts.errors) == (66, 6)
    rate, errors, p50, p99 = charts.by_version
    assert [s.name for s in rate.series] == ["v1", "v2"]
    v1_points = [float(p.split(",")[1]) for p in rate.series[0].points.split()]
    assert v1_points[-1] < HEIGHT and set(v1_points[:-1]) == {HEIGHT}
    assert rate.series[0].last == "1 req/s"
    assert errors.series[0].last == "10 %"
    assert p50.series[0].last == p99.series[0].last == "5 ms"
    assert [s.name for s in charts.by_region[0].series] == ["eu", "us"]


def test_no_traffic_draws_no_line() -> None:
    charts = traffic_charts([], NOW)
    assert charts.requests == 0
    assert all(chart.series == [] for chart in charts.by_version + charts.by_region)


def call(path: str) -> SampleCall:
    return SampleCall(
        owner="acme",
        project="demo",
        deployment="web",
        serving="production",
        endpoint="predict",
        method="POST",
        path=path,
        headers=[("X-Trace", "a b")],
        body_kind="json",
        body='{"x": 1}',
    )


@pytest.mark.parametrize("path", ["../../other/v1/x", "//169.254.169.254/latest", "a/./../b"])
def test_a_tested_path_stays_under_the_endpoint_on_the_router(path: str) -> None:
    url = call(path).url("http://router:8081")
    assert url.startswith("http://router:8081/acme/demo/web/production/predict/")
    assert "/../" not in url and "169.254.169.254/" not in url.split("predict/", 1)[0]


def test_curl_repeats_the_call_quoted_for_a_shell() -> None:
    command = curl_command(call("score?x=1"), "http://router:8081")
    assert command == (
        "curl -i -X POST -H 'Content-Type: application/json' -H 'X-Trace: a b' "
        "--data-binary '{\"x\": 1}' 'http://router:8081/acme/demo/web/production/predict/score?x=1'"
    )


def test_header_lines_are_parsed_and_hop_headers_dropped() -> None:
    assert parse_headers("Accept: text/plain\n\nHost: evil\nX-A:1") == [
        ("Accept", "text/plain"),
        ("X-A", "1"),
    ]
    with pytest.raises(ValueError, match="not a 'Name: value'"):
        parse_headers("no colon here")


def test_timeline_lines_say_what_happened() -> None:
    entry = timeline_entry(
        7,
        "alias.changed",
        {
            "time": "2026-12-08T12:00:01.5Z",
            "data": {"name": "production", "target": {"weights": {"v1": 90, "v2": 10}}},
        },
    )
    assert (entry.id, entry.time, entry.summary) == (
        7,
        "2026-12-08 12:00:01",
        "production → v1 90%, v2 10%",
    )


def test_build_timings_count_from_one_milestone_to_the_next() -> None:
    rows = build_timings(
        [
            ("version.created", NOW),
            ("version.build.started", NOW + timedelta(seconds=1)),
            ("version.built", NOW + timedelta(seconds=4.5)),
        ]
    )
    assert rows == [
        ("submitted", "2026-12-08T12:00:00Z", ""),
        ("build started", "2026-12-08T12:00:01Z", "1.0 s"),
        ("built", "2026-12-08T12:00:04Z", "3.5 s"),
    ]


def test_replicas_are_summed_over_targets_and_follow_each_change() -> None:
    changes = [
        ReplicaChange(NOW - timedelta(hours=3), "v1", "predict", "eu", 1),  # before: the start
        ReplicaChange(NOW - timedelta(minutes=30, seconds=10), "v1", "predict", "us", 2),
        ReplicaChange(NOW - timedelta(minutes=10, seconds=10), "v1", "predict", "eu", 0),
        ReplicaChange(NOW - timedelta(minutes=5, seconds=10), "v2", "predict", "eu", 0),
    ]
    chart = replica_chart(changes, NOW)
    [v1] = chart.series  # v2 never served: not drawn
    heights = [float(point.split(",")[1]) for point in v1.points.split()]
    top, middle, low = (HEIGHT - (HEIGHT - 4) * n / 3 for n in (3, 1, 2))
    assert heights[0] == pytest.approx(middle, abs=0.05)  # eu's one replica from before the hour
    assert heights[30] == pytest.approx(top, abs=0.05)  # and us's two
    assert heights[-1] == pytest.approx(low, abs=0.05)  # eu scaled to zero
    assert (chart.top, v1.last) == ("3", "2")


def test_the_session_cookie_is_secure_over_https_and_behind_a_tls_proxy() -> None:
    def options(url: str, headers: dict[str, str]) -> dict[str, object]:
        scope = {
            "type": "http",
            "scheme": url.split(":")[0],
            "path": "/console/",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("dockyard.example", 443),
            "query_string": b"",
        }
        return cookie_options(Request(scope))

    assert options("https://x", {})["secure"] is True
    assert options("http://x", {"X-Forwarded-Proto": "https"})["secure"] is True
    assert options("http://x", {})["secure"] is False
    assert options("http://x", {})["samesite"] == "strict"
    assert options("http://x", {})["httponly"] is True
