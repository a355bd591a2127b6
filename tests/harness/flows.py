"""Steps of a user's flow through the API, shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names

__all__ = [
    "WSGI_APP",
    "create_version",
    "deploy_ready",
    "ensure_project",
    "put_deployment",
    "upload_blob",
    "wait_for_version",
]

WSGI_APP = b"""\
import os


def app(environ, start_response):
    body = "{} {} {} prefix={}".format(
        environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""),
        os.environ.get("VH_DEFAULT_PREFIX"),
    ).encode()
    if environ["REQUEST_METHOD"] == "POST":
        body += b" body=" + environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def project_path(names: Names) -> str:
    return f"/v1/projects/{names.owner}/{names.project}"


async def ensure_project(api: httpx.AsyncClient, names: Names) -> None:
    """Create the test's owner and project (``api`` holds the platform admin token)."""
    owner = await api.post("/v1/owners", json={"name": names.owner})
    assert owner.status_code in (201, 409), owner.text
    project = await api.put(project_path(names), json={})
    assert project.status_code in (200, 201), project.text


async def put_deployment(api: httpx.AsyncClient, names: Names, targets: list[str]) -> None:
    """Create the test's owner, project and deployment on ``targets``."""
    await ensure_project(api, names)
    response = await api.put(
        f"{project_path(names)}/deployments/{names.deployment}", json={"targets": targets}
    )
    assert response.status_code == 201, response.text


async def upload_blob(api: httpx.AsyncClient, names: Names, data: bytes) -> str:
    """Upload ``data`` to the project's blobs; returns its digest."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    response = await api.put(f"{project_path(names)}/blobs/{digest}", content=data)
    assert response.status_code in (200, 201), response.text
    return digest


async def create_version(
    api: httpx.AsyncClient, names: Names, body: dict[str, Any]
) -> httpx.Response:
    """POST a version of the test's deployment."""
    return await api.post(
        f"{project_path(names)}/deployments/{names.deployment}/versions", json=body
    )


async def wait_for_version(
    api: httpx.AsyncClient, names: Names, version: str, status: str, within_s: float = 30.0
) -> dict[str, Any]:
    """Wait until the version reaches ``status``; fail naming the last status seen."""
    url = f"{project_path(names)}/deployments/{names.deployment}/versions/{version}"
    deadline = time.monotonic() + within_s
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = (await api.get(url)).json()
        if seen.get("status") == status:
            return seen
        if seen.get("status") == "failed" and status != "failed":
            break
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"version {version} did not become {status!r} within {within_s} s; last seen: "
        f"status={seen.get('status')!r} error={seen.get('error')!r} "
        f"endpoints={seen.get('endpoint_states')}"
    )


async def deploy_ready(
    api: httpx.AsyncClient, names: Names, version: str, *, app: bytes = WSGI_APP
) -> dict[str, Any]:
    """Upload ``app`` as ``app.py``, submit it as ``version`` (one wsgi endpoint, predict)
    of the test's deployment, and wait until it is ready; the version resource."""
    code = await upload_blob(api, names, tar_gz({"app.py": app}))
    created = await create_version(
        api,
        names,
        {
            "name": version,
            "code": {"blob": code},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    assert created.status_code == 201, created.text
    return await wait_for_version(api, names, version, "ready")
