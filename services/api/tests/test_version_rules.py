"""The submission decision, without I/O: from the request, the deployment and the facts read
beforehand, the version to store, or one refusal naming every problem."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard_api.inputs import VersionIn
from dockyard_api.version_rules import (
    SubmissionFacts,
    decide_version,
    valohai_endpoints,
    version_stopping,
)
from dockyard_common import (
    CodeRef,
    Deployment,
    EndpointFile,
    EndpointSpec,
    InvalidInput,
    Replicas,
    Version,
    VersionStatus,
)

BLOB = "sha256:" + "a" * 64
MODEL = "sha256:" + "b" * 64
DEPLOYMENT = Deployment(owner="acme", project="demo", name="web", targets=["eu", "us"])
PREDICT = EndpointSpec(
    name="predict", wsgi="app:app", files=[EndpointFile(name="model", path="model.pkl")]
)


def request(**fields: Any) -> VersionIn:
    return VersionIn.model_validate({"code": {"blob": BLOB}, **fields})


def facts(endpoints: list[EndpointSpec] | None = None, **fields: Any) -> SubmissionFacts:
    return SubmissionFacts(endpoints=[PREDICT] if endpoints is None else endpoints, **fields)


def refusal(submitted: VersionIn, known: SubmissionFacts) -> str:
    with pytest.raises(InvalidInput) as refused:
        decide_version(submitted, DEPLOYMENT, known)
    return str(refused.value)


def test_a_submission_becomes_a_pending_version_on_the_deployments_targets() -> None:
    submitted = request(
        files={"predict": {"model": MODEL}},
        replicas={"predict": {"min": 2, "max": 3}},
        env={"MODE": "fast"},
    )
    version = decide_version(submitted, DEPLOYMENT, facts()).named("20260101.1")
    assert isinstance(version, Version)
    assert (version.owner, version.project, version.deployment, version.name) == (
        "acme",
        "demo",
        "web",
        "20260101.1",
    )
    assert version.status is VersionStatus.PENDING and version.targets == ["eu", "us"]
    [endpoint] = version.endpoints
    assert endpoint.files[0].digest == MODEL and endpoint.files[0].url is None
    assert endpoint.replicas == Replicas(min=2, max=3)
    assert version.env == {"MODE": "fast"} and version.code == CodeRef(blob=BLOB)


def test_one_problem_is_named_as_it_always_was() -> None:
    assert refusal(request(), facts()) == (
        "endpoint 'predict' needs file 'model': upload it as a blob and give its digest "
        "(or an https URL) in files.predict"
    )


def test_every_problem_is_named_at_once() -> None:
    other = EndpointSpec(
        name="batch", wsgi="app:app", files=[EndpointFile(name="weights", path="w.bin")]
    )
    submitted = request(
        files={
            "predict": {"model": MODEL, "tokenizer": MODEL},
            "batch": {"weights": "https://10.0.0.1/w.bin"},
            "ghost": {"model": MODEL},
        },
        replicas={"nobody": {"min": 1, "max": 1}},
    )
    known = facts(
        [PREDICT, other],
        missing_blobs=frozenset({MODEL}),
        refused_urls={"https://10.0.0.1/w.bin": "10.0.0.1 is a private address"},
    )
    said = refusal(submitted, known)
    for problem in (
        "files name endpoints this version lacks: ghost",
        "endpoint 'predict' declares no file 'tokenizer'; it declares 'model'",
        "replicas name endpoints this version lacks: nobody",
        f"file 'model' of endpoint 'predict': blob {MODEL} is not uploaded to acme/demo; "
        f"PUT it to /v1/projects/acme/demo/blobs/{MODEL} first",
        "file 'weights' of endpoint 'batch': 10.0.0.1 is a private address",
    ):
        assert problem in said
    assert said.count("; ") >= 4


def test_a_refused_git_url_is_named_beside_the_refused_definitions() -> None:
    known = SubmissionFacts(
        endpoints=None,
        endpoints_refused="valohai.yaml defines no endpoints",
        git_refused="git URL 'file:///srv/code' reads this server's disk; use https:// or ssh://",
    )
    assert refusal(request(), known) == (
        "git URL 'file:///srv/code' reads this server's disk; use https:// or ssh://; "
        "valohai.yaml defines no endpoints"
    )


def test_repeated_endpoint_names_are_refused() -> None:
    twice = [PREDICT, PREDICT]
    said = refusal(request(files={"predict": {"model": MODEL}}), facts(twice))
    assert said == "endpoint names must be unique; repeated: predict"


def test_a_url_not_refused_is_bound_as_a_url() -> None:
    submitted = request(files={"predict": {"model": "https://models.example.com/m.pkl"}})
    decided = decide_version(submitted, DEPLOYMENT, facts())
    file = decided.endpoints[0].files[0]
    assert (file.url, file.digest) == ("https://models.example.com/m.pkl", None)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ({"blob": BLOB}, True),
        ({"git": {"url": "https://git.example.com/r.git", "ref": "main"}}, False),
    ],
)
def test_no_definitions_anywhere_says_where_they_may_come_from(
    code: dict[str, Any], hint: bool
) -> None:
    with pytest.raises(InvalidInput) as refused:
        valohai_endpoints(VersionIn.model_validate({"code": code}), None)
    said = str(refused.value)
    assert said.startswith("no endpoint definitions: give 'endpoints' inline or 'valohai_yaml'")
    assert ("a valohai.yaml at the root of the code" in said) is hint


def test_the_code_s_valohai_yaml_gives_the_endpoints_the_request_names() -> None:
    text = (
        "- endpoint:\n    name: predict\n    image: python:3.11\n    wsgi: app:app\n"
        "- endpoint:\n    name: batch\n    image: python:3.11\n    wsgi: app:batch\n"
    )
    named = VersionIn.model_validate({"code": {"blob": BLOB}, "endpoints": ["batch"]})
    assert [spec.name for spec in valohai_endpoints(named, text).specs] == ["batch"]


def test_a_stop_marks_a_running_version_stopping_and_leaves_a_stopped_one() -> None:
    version = decide_version(request(files={"predict": {"model": MODEL}}), DEPLOYMENT, facts())
    running = version.named("v1").model_copy(update={"status": VersionStatus.READY})
    stopping = version_stopping(running, running.created_at)
    assert stopping is not None and stopping.status is VersionStatus.STOPPING
    assert version_stopping(stopping, running.created_at) is None


def test_the_valohai_yaml_s_warnings_stay_with_the_version() -> None:
    said = ["valohai.yaml's step 'train' is not valid (not deployed): ..."]
    decided = decide_version(
        request(files={"predict": {"model": MODEL}}), DEPLOYMENT, facts(warnings=said)
    )
    assert decided.named("v1").warnings == said


def test_scale_to_zero_is_taken_on_load_and_refused_on_cpu() -> None:
    idle = request(files={"predict": {"model": MODEL}}, replicas={"predict": {"min": 0, "max": 2}})
    decided = decide_version(idle, DEPLOYMENT, facts())
    assert decided.named("v1").endpoints[0].replicas.min == 0
    on_cpu = request(
        files={"predict": {"model": MODEL}},
        replicas={"predict": {"min": 0, "max": 2, "metric": "cpu"}},
    )
    assert "min 0 (scale to zero) needs metric concurrency" in refusal(on_cpu, facts())
