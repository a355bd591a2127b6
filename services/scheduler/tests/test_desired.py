"""What each target should run: pure decisions over versions and targets."""

from __future__ import annotations

from dockyard_common import CodeRef, EndpointSpec, ImageInfo, Target, Version
from dockyard_scheduler.desired import desired_workloads, endpoint_prefix

DIGEST = "sha256:" + "0" * 64


def a_version(image: bool = True) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob=DIGEST),
        targets=["local-eu", "local-us", "mars"],
        endpoints=[
            EndpointSpec(name="predict", wsgi="app:app"),
            EndpointSpec(name="explain", wsgi="app:explain"),
        ],
        image=ImageInfo(
            reference="oci:/x:y",
            digest=DIGEST,
            layers=[],
            endpoints={"predict": "sha256:" + "1" * 64, "explain": "sha256:" + "2" * 64},
        )
        if image
        else None,
    )


TARGETS = {
    "local-eu": Target(name="local-eu", region="eu", address="127.0.1.1"),
    "local-us": Target(name="local-us", region="us", address="127.0.2.1"),
}


def test_every_endpoint_runs_on_every_known_target_with_its_own_image() -> None:
    workloads, missing = desired_workloads(a_version(), TARGETS)
    assert sorted(w.key for w in workloads) == [
        "acme.demo.web.v1/explain/local-eu",
        "acme.demo.web.v1/explain/local-us",
        "acme.demo.web.v1/predict/local-eu",
        "acme.demo.web.v1/predict/local-us",
    ]
    assert {w.manifest_digest for w in workloads if w.endpoint.name == "predict"} == {
        "sha256:" + "1" * 64
    }
    assert missing == ["mars"]


def test_a_version_without_an_image_needs_nothing_yet() -> None:
    assert desired_workloads(a_version(image=False), TARGETS) == ([], [])


def test_the_prefix_is_what_the_router_strips() -> None:
    assert endpoint_prefix(a_version(), "predict") == "/acme/demo/web/v1/predict"
