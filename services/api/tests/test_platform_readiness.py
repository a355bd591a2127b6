"""The platform's readiness: ready only when the API, a router and the targets all are."""

from __future__ import annotations

from dockyard_api.readiness import platform_readiness


def judge(**facts: object) -> dict[str, tuple[bool, str]]:
    arguments: dict[str, object] = {
        "instance_id": "i-1",
        "api_problem": None,
        "routers": 2,
        "targets": ["local-eu", "local-us"],
        "expected_targets": ["local-eu", "local-us"],
    }
    arguments.update(facts)
    readiness = platform_readiness(**arguments)  # type: ignore[arg-type]
    parts = {part.name: (part.ready, part.detail) for part in readiness.parts}
    parts["all"] = (readiness.ready, readiness.instance_id)
    return parts


def test_every_part_ready_makes_the_platform_ready_under_its_instance_id() -> None:
    assert judge()["all"] == (True, "i-1")


def test_no_router_heard_yet_keeps_the_platform_not_ready_saying_so() -> None:
    parts = judge(routers=0)
    assert parts["all"][0] is False
    assert parts["router"] == (False, "no router process has been heard from yet")


def test_an_expected_target_not_registered_yet_is_named() -> None:
    parts = judge(targets=["local-eu"])
    assert parts["all"][0] is False
    assert parts["targets"] == (False, "not registered yet: local-us")


def test_without_expected_targets_any_one_will_do_but_none_is_not_ready() -> None:
    assert judge(expected_targets=[], targets=["k8s-eu"])["all"][0] is True
    assert judge(expected_targets=[], targets=[])["targets"] == (False, "no target registered")


def test_an_api_that_cannot_serve_says_why() -> None:
    parts = judge(api_problem="NATS or the event stream is unavailable: timeout", targets=[])
    assert parts["api"] == (False, "NATS or the event stream is unavailable: timeout")
    assert parts["all"][0] is False
