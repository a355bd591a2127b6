"""Model files: declared in valohai.yaml, uploaded once as blobs, placed at their path."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version

pytestmark = pytest.mark.e2e

VALOHAI_YAML = b"""\
- endpoint:
    name: predict
    image: python:3.11-slim
    wsgi: serve:app
    files:
      - name: model
        path: models/weights.json
"""

SERVE = b"""\
import json

with open("models/weights.json") as handle:
    WEIGHTS = json.load(handle)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(WEIGHTS).encode()]
"""


async def test_an_endpoint_reads_its_model_file_at_the_declared_path(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"serve.py": SERVE, "valohai.yaml": VALOHAI_YAML}))
    weights = json.dumps({"slope": 2.0, "bias": 0.5}).encode()
    model = await upload_blob(api, names, weights)
    assert (
        await api.head(f"/v1/projects/{names.owner}/{names.project}/blobs/{model}")
    ).status_code == 200

    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": code},
            "files": {"predict": {"model": model}},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["endpoints"][0]["files"][0]["digest"] == model
    ready = await wait_for_version(api, names, "v1", "ready")
    roles = [layer["role"] for layer in ready["image"]["layers"]]
    assert roles == ["code", "runner", "file:predict/model"]

    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url)
    assert answer.status_code == 200 and answer.json() == {"slope": 2.0, "bias": 0.5}


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({}, "needs file 'model'"),
        ({"predict": {"weights": "sha256:" + "5" * 64}}, "declares no file 'weights'"),
        ({"explain": {"model": "sha256:" + "5" * 64}}, "lacks: explain"),
        ({"predict": {"model": "sha256:" + "5" * 64}}, "is not uploaded"),
    ],
)
async def test_missing_or_unknown_files_are_refused_by_name(
    api: httpx.AsyncClient, names: Names, files: dict[str, dict[str, str]], complaint: str
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"serve.py": SERVE, "valohai.yaml": VALOHAI_YAML}))
    response = await create_version(api, names, {"code": {"blob": code}, "files": files})
    assert response.status_code == 422, response.text
    assert complaint in response.json()["detail"]


async def test_every_problem_of_a_submission_is_named_in_one_answer(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"serve.py": SERVE, "valohai.yaml": VALOHAI_YAML}))
    never_uploaded = "sha256:" + "6" * 64
    response = await create_version(
        api,
        names,
        {
            "code": {"blob": code},
            "files": {
                "predict": {"model": never_uploaded, "weights": never_uploaded},
                "explain": {"model": never_uploaded},
            },
            "replicas": {"batch": {"min": 1, "max": 1}},
        },
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    for complaint in (
        "files name endpoints this version lacks: explain",
        "endpoint 'predict' declares no file 'weights'",
        "replicas name endpoints this version lacks: batch",
        f"file 'model' of endpoint 'predict': blob {never_uploaded} is not uploaded",
    ):
        assert complaint in detail
    listed = await api.get(
        f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/versions"
    )
    assert listed.status_code == 200 and listed.json()["items"] == []


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server on loopback serving ``tmp_path``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_model_file_can_come_from_a_url_the_builder_downloads(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    file_server: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "weights.json").write_text(json.dumps({"slope": 3.0}))
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"serve.py": SERVE, "valohai.yaml": VALOHAI_YAML}))
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": code},
            "files": {"predict": {"model": f"{file_server}/weights.json"}},
        },
    )
    assert created.status_code == 201, created.text
    await wait_for_version(api, names, "v1", "ready")
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(url)).json() == {"slope": 3.0}

    missing = await create_version(
        api,
        names,
        {
            "name": "v2",
            "code": {"blob": code},
            "files": {"predict": {"model": f"{file_server}/no-such-file.json"}},
        },
    )
    assert missing.status_code == 201
    failed = await wait_for_version(api, names, "v2", "failed")
    assert "answered 404" in failed["error"]
