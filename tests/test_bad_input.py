"""Bad input gets a clear 4xx problem, and nothing is stored or emitted."""

from __future__ import annotations

import tarfile
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from tests.harness.archives import member, tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    ensure_project,
    put_deployment,
    upload_blob,
)

pytestmark = pytest.mark.e2e

INLINE = [{"name": "predict", "wsgi": "app:app"}]


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("https://dockyard.dev/problems/")
    return body


@pytest.fixture
async def deployment(api: httpx.AsyncClient, names: Names) -> Names:
    await put_deployment(api, names, ["local-eu"])
    return names


async def test_requests_without_the_admin_token_are_unauthorised(
    platform: RunningPlatform, names: Names
) -> None:
    async with httpx.AsyncClient(base_url=platform.api_url) as anonymous:
        problem(await anonymous.get("/v1/targets"), 401)
        wrong = {"Authorization": "Bearer not-the-token"}
        problem(await anonymous.get("/v1/targets", headers=wrong), 401)
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_malformed_json_is_refused(api: httpx.AsyncClient, deployment: Names) -> None:
    response = await api.post(
        f"/v1/projects/{deployment.owner}/{deployment.project}/deployments/web/versions",
        content=b'{"code": ',
        headers={"Content-Type": "application/json"},
    )
    assert "JSON" in problem(response, 422)["detail"]


async def test_unknown_fields_are_refused_by_name(
    api: httpx.AsyncClient, deployment: Names
) -> None:
    code = await upload_blob(api, deployment, tar_gz({"app.py": WSGI_APP}))
    body = {"code": {"blob": code}, "endpoints": INLINE, "status": "ready"}
    assert "status" in problem(await create_version(api, deployment, body), 422)["detail"]


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("/v1/projects/Acme/demo/deployments/web", "owner name 'Acme'"),
        ("/v1/projects/acme/my_project/deployments/web", "project name 'my_project'"),
        ("/v1/projects/acme/demo/deployments/-web", "deployment name '-web'"),
    ],
)
async def test_bad_names_in_paths_are_refused_with_the_rule(
    api: httpx.AsyncClient, path: str, complaint: str
) -> None:
    response = await api.put(path, json={"targets": ["local-eu"]})
    assert complaint in problem(response, 422)["detail"]


async def test_a_bad_endpoint_name_gets_the_rule_and_a_proposal(
    api: httpx.AsyncClient, deployment: Names
) -> None:
    code = await upload_blob(api, deployment, tar_gz({"app.py": WSGI_APP}))
    response = await create_version(
        api,
        deployment,
        {"code": {"blob": code}, "endpoints": [{"name": "Predict-Digit", "wsgi": "app:app"}]},
    )
    detail = problem(response, 422)["detail"]
    assert "^[a-z][a-z0-9-]+$" in detail and "'predict-digit'" in detail


@pytest.mark.parametrize(
    ("archive", "complaint"),
    [
        (b"this is not an archive", "not a readable tar.gz"),
        (tar_gz({"app.py": WSGI_APP}, hostile=[member("../../etc/cron.d/x")]), "climbs out"),
        (
            tar_gz({"app.py": WSGI_APP}, hostile=[member("key", tarfile.SYMTYPE, "/root/.ssh/id")]),
            "is a link",
        ),
    ],
)
async def test_a_bad_code_archive_is_refused_naming_the_problem(
    api: httpx.AsyncClient, deployment: Names, archive: bytes, complaint: str
) -> None:
    code = await upload_blob(api, deployment, archive)
    response = await create_version(api, deployment, {"code": {"blob": code}, "endpoints": INLINE})
    assert complaint in problem(response, 422)["detail"]


async def test_code_that_was_never_uploaded_is_named(
    api: httpx.AsyncClient, deployment: Names
) -> None:
    body = {"code": {"blob": "sha256:" + "1" * 64}, "endpoints": INLINE}
    assert "PUT it to" in problem(await create_version(api, deployment, body), 422)["detail"]


async def test_an_upload_whose_bytes_do_not_match_its_digest_is_refused(
    api: httpx.AsyncClient, names: Names
) -> None:
    await ensure_project(api, names)
    url = f"/v1/projects/{names.owner}/{names.project}/blobs/sha256:{'2' * 64}"
    assert "hash to" in problem(await api.put(url, content=b"other bytes"), 422)["detail"]
    assert (await api.head(url)).status_code == 404


async def test_an_oversized_json_body_is_refused(api: httpx.AsyncClient, deployment: Names) -> None:
    huge = {
        "code": {"blob": "sha256:" + "3" * 64},
        "endpoints": INLINE,
        "env": {"X": "y" * (2 * 1024 * 1024)},
    }
    problem(await create_version(api, deployment, huge), 413)


async def test_unknown_targets_and_deployments_are_named(
    api: httpx.AsyncClient, names: Names
) -> None:
    await ensure_project(api, names)
    response = await api.put(
        f"/v1/projects/{names.owner}/{names.project}/deployments/web",
        json={"targets": ["mars-1"]},
    )
    assert "'mars-1'" in problem(response, 422)["detail"]
    missing = await create_version(
        api, names, {"code": {"blob": "sha256:" + "4" * 64}, "endpoints": INLINE}
    )
    problem(missing, 404)


async def test_a_version_name_is_taken_only_once(api: httpx.AsyncClient, deployment: Names) -> None:
    code = await upload_blob(api, deployment, tar_gz({"app.py": WSGI_APP}))
    body = {"name": "v1", "code": {"blob": code}, "endpoints": INLINE}
    assert (await create_version(api, deployment, body)).status_code == 201
    problem(await create_version(api, deployment, body), 409)


async def test_refused_submissions_store_nothing_and_emit_nothing(
    api: httpx.AsyncClient, deployment: Names, js: JetStreamContext
) -> None:
    events = await js.subscribe(
        f"dockyard.events.{deployment.owner}.*.*.version.>", ordered_consumer=True
    )
    bad_code = await upload_blob(api, deployment, tar_gz({"a.py": b""}, hostile=[member("../x")]))
    good_code = await upload_blob(api, deployment, tar_gz({"app.py": WSGI_APP}))
    refused = [
        {"code": {"blob": bad_code}, "endpoints": INLINE},
        {"code": {"blob": good_code}, "endpoints": [{"name": "x y", "wsgi": "app:app"}]},
        {"code": {"blob": good_code}, "endpoints": INLINE, "extra": 1},
    ]
    for body in refused:
        assert (await create_version(api, deployment, body)).status_code == 422
    listing = await api.get(
        f"/v1/projects/{deployment.owner}/{deployment.project}/deployments/web/versions"
    )
    assert listing.json()["items"] == []

    accepted = await create_version(
        api, deployment, {"code": {"blob": good_code}, "endpoints": INLINE}
    )
    assert accepted.status_code == 201
    # The stream keeps order: the first event of this owner is the accepted version's.
    first = await events.next_msg(timeout=5)
    assert first.subject.endswith(".version.created")
    assert b'"name":"' + accepted.json()["name"].encode() in first.data
    await events.unsubscribe()


async def test_a_method_a_route_lacks_is_405_naming_the_allowed_ones(
    api: httpx.AsyncClient,
) -> None:
    response = await api.request("TRACE", "/v1/targets")
    problem(response, 405)
    assert "GET" in response.headers["Allow"]


HORSES_YAML = """
- endpoint:
    name: Horses_Vs_Humans
    image: python:3.11
    server-command: python app.py
- endpoint:
    name: predict
    image: python:3.11
    wsgi: app:app
"""


async def test_another_endpoint_of_the_file_being_invalid_is_a_warning(
    api: httpx.AsyncClient, deployment: Names
) -> None:
    code = await upload_blob(api, deployment, tar_gz({"app.py": WSGI_APP}))
    body = {"code": {"blob": code}, "valohai_yaml": HORSES_YAML}
    whole = problem(await create_version(api, deployment, body), 422)
    assert "try 'horses-vs-humans'" in whole["detail"]
    created = await create_version(api, deployment, {**body, "endpoints": ["predict"]})
    assert created.status_code == 201, created.text
    [warning] = created.json()["warnings"]
    assert "endpoint 'Horses_Vs_Humans' is not valid (not deployed)" in warning
    twice = HORSES_YAML + "- endpoint:\n    name: predict\n    image: x\n    wsgi: app:b\n"
    refused = await create_version(
        api, deployment, {**body, "valohai_yaml": twice, "endpoints": ["predict"]}
    )
    assert "endpoint 'predict' 2 times" in problem(refused, 422)["detail"]
