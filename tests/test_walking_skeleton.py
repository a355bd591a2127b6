"""End to end through HTTP only: submit a version, build it, run it on two targets, call it."""

from __future__ import annotations

import time
import urllib.parse

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    put_deployment,
    upload_blob,
    wait_for_version,
)

pytestmark = pytest.mark.e2e


async def test_a_submitted_version_answers_through_the_router_on_both_targets(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    targets = (await api.get("/v1/targets")).json()["items"]
    assert {t["name"]: t["region"] for t in targets} == {"local-eu": "eu", "local-us": "us"}
    await put_deployment(api, names, ["local-eu", "local-us"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))

    submitted_at = time.monotonic()
    response = await create_version(
        api,
        names,
        {
            "code": {"blob": code},
            "endpoints": [
                {"name": "predict", "wsgi": "app:app"},
                {"name": "shell", "server-command": "python -m http.server $PORT --bind $HOST"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    version = response.json()["name"]
    assert version.startswith(time.strftime("%Y%m%d", time.gmtime()) + ".")
    assert response.json()["status"] == "pending"

    ready = await wait_for_version(api, names, version, "ready")
    print(f"\nversion ready on 2 targets {time.monotonic() - submitted_at:.2f} s after submission")
    assert ready["image"]["digest"].startswith("sha256:")
    assert set(ready["image"]["endpoints"]) == {"predict", "shell"}
    placements = {(s["endpoint"], s["target"]): s for s in ready["endpoint_states"]}
    assert set(placements) == {
        (e, t) for e in ("predict", "shell") for t in ("local-eu", "local-us")
    }
    # Each replica in a network namespace of its own, reached through its Unix socket.
    eu, us = (placements[("predict", t)]["upstreams"] for t in ("local-eu", "local-us"))
    assert eu[0].startswith("unix:") and us[0].startswith("unix:") and eu != us

    base = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/{version}"
    async with httpx.AsyncClient(timeout=10) as client:
        got = await client.get(f"{base}/predict/digits/7?top=3")
        assert got.status_code == 200, got.text
        prefix = f"/{names.owner}/{names.project}/{names.deployment}/{version}/predict"
        assert got.text == f"GET /digits/7 top=3 prefix={prefix}"
        assert got.headers["X-Dockyard-Version"] == version
        assert got.headers["X-Dockyard-Region"] == "eu"

        posted = await client.post(f"{base}/predict/predict", content=b'{"x": [1, 2]}')
        assert posted.text.endswith('body={"x": [1, 2]}')

        for region in ("eu", "us"):
            listing = await client.get(f"{base}/shell/", headers={"X-Dockyard-Region": region})
            assert listing.status_code == 200
            assert listing.headers["X-Dockyard-Region"] == region
            assert "app.py" in listing.text  # the server-command runs in the code root

        missing = await client.get(f"{base}/nope/")
        assert missing.status_code == 404
        assert missing.headers["Content-Type"].startswith("application/problem+json")


async def test_the_router_never_leaves_the_upstream_host(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    response = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": code},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    assert response.status_code == 201, response.text
    await wait_for_version(api, names, "v1", "ready")
    base = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/predict"
    async with httpx.AsyncClient(timeout=10) as client:
        for hostile in ("//169.254.169.254/latest", "/http://evil/x", "/%2F%2Fevil/x"):
            got = await client.get(base + hostile)
            assert got.status_code == 200, (hostile, got.text)
            # Our endpoint answered, and saw the hostile part as a path on its own host
            # (its WSGI server may fold repeated slashes).
            path = got.text.split(" ")[1]
            tail = urllib.parse.unquote(hostile).lstrip("/")
            assert path.lstrip("/") == tail, (hostile, got.text)


async def test_endpoints_default_to_the_valohai_yaml_at_the_root_of_the_code(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    valohai_yaml = (
        b"- endpoint:\n    name: predict\n    image: python:3.11-slim\n    wsgi: app:app\n"
    )
    await put_deployment(api, names, ["local-us"])
    # tar -C dir . names members ./app.py, as most users' archives do.
    code = await upload_blob(
        api, names, tar_gz({"./app.py": WSGI_APP, "./valohai.yaml": valohai_yaml})
    )
    response = await create_version(api, names, {"code": {"blob": code}})
    assert response.status_code == 201, response.text
    assert [e["name"] for e in response.json()["endpoints"]] == ["predict"]
    version = response.json()["name"]
    await wait_for_version(api, names, version, "ready")
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/{version}"
    async with httpx.AsyncClient(timeout=10) as client:
        got = await client.get(f"{url}/predict/ping")
    assert got.status_code == 200 and got.text.startswith("GET /ping")
    assert got.headers["X-Dockyard-Region"] == "us"  # the only region it runs in


async def test_the_api_describes_itself_in_openapi(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(base_url=platform.api_url) as client:
        document = (await client.get("/openapi.json")).json()
    assert "/v1/projects/{owner}/{project}/deployments/{deployment}/versions" in document["paths"]
