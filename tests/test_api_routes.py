"""The happy path of every API route a user scripts against, as a platform team would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    ensure_project,
    put_deployment,
    upload_blob,
    wait_for_version,
)

pytestmark = pytest.mark.e2e


async def test_owners_and_tokens(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    created = await api.post("/v1/owners", json={"name": names.owner})
    assert created.status_code == 201 and created.json()["name"] == names.owner
    assert (await api.post("/v1/owners", json={"name": names.owner})).status_code == 409
    assert (await api.get(f"/v1/owners/{names.owner}")).json()["name"] == names.owner

    issued = await api.post(
        f"/v1/owners/{names.owner}/tokens", json={"role": "deployer", "description": "ci"}
    )
    assert issued.status_code == 201
    token = issued.json()
    assert token["token"].startswith("dy_") and token["role"] == "deployer"
    listed = (await api.get(f"/v1/owners/{names.owner}/tokens")).json()["items"]
    assert [t["id"] for t in listed] == [token["id"]]
    assert "token" not in listed[0]
    async with httpx.AsyncClient(base_url=platform.api_url) as client:
        headers = {"Authorization": f"Bearer {token['token']}"}
        assert (await client.get(f"/v1/projects/{names.owner}", headers=headers)).status_code == 200


async def test_a_token_stops_working_when_it_expires(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await ensure_project(api, names)
    past = await api.post(
        f"/v1/owners/{names.owner}/tokens",
        json={"role": "viewer", "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert past.status_code == 422
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    token = (
        await api.post(
            f"/v1/owners/{names.owner}/tokens", json={"role": "viewer", "expires_at": soon}
        )
    ).json()["token"]
    async with httpx.AsyncClient(
        base_url=platform.api_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert (await client.get(f"/v1/projects/{names.owner}")).status_code == 200
        await asyncio.sleep(1.2)  # let the expiry pass: a clock, not a synchronisation
        assert (await client.get(f"/v1/projects/{names.owner}")).status_code == 401


async def test_targets(api: httpx.AsyncClient, names: Names) -> None:
    body = {
        "region": "mars",
        "kind": "local",
        "address": "127.0.9.1",
        "public_url": "https://mars.example",
        "labels": {"tier": "gpu"},
    }
    target = f"mars-{names.owner}"
    created = await api.put(f"/v1/targets/{target}", json=body)
    assert created.status_code == 201 and created.headers["ETag"]
    assert (await api.put(f"/v1/targets/{target}", json=body)).status_code == 200
    got = (await api.get(f"/v1/targets/{target}")).json()
    assert (got["region"], got["address"], got["labels"]) == ("mars", "127.0.9.1", {"tier": "gpu"})
    assert target in [t["name"] for t in (await api.get("/v1/targets")).json()["items"]]
    await put_deployment(api, names, [target])
    in_use = await api.delete(f"/v1/targets/{target}")
    assert in_use.status_code == 409 and names.owner in in_use.json()["detail"]
    deployment = f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}"
    assert (await api.delete(deployment)).status_code == 204
    assert (await api.delete(f"/v1/targets/{target}")).status_code == 204
    assert (await api.get(f"/v1/targets/{target}")).status_code == 404


async def test_projects_and_deployments(api: httpx.AsyncClient, names: Names) -> None:
    await ensure_project(api, names)
    project = f"/v1/projects/{names.owner}/{names.project}"
    changed = await api.put(project, json={"description": "digits"})
    assert changed.status_code == 200 and changed.json()["description"] == "digits"
    assert [p["name"] for p in (await api.get(f"/v1/projects/{names.owner}")).json()["items"]] == [
        names.project
    ]
    await put_deployment(api, names, ["local-eu"])
    deployments = (await api.get(f"{project}/deployments")).json()["items"]
    assert [d["name"] for d in deployments] == [names.deployment]
    assert (await api.delete(project)).status_code == 409  # it still has a deployment
    assert (await api.delete(f"{project}/deployments/{names.deployment}")).status_code == 204
    assert (await api.delete(project)).status_code == 204
    assert (await api.get(project)).status_code == 404


async def test_versions_aliases_and_health(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    again = await api.put(
        f"/v1/projects/{names.owner}/{names.project}/blobs/{code}",
        content=tar_gz({"app.py": WSGI_APP}),
    )
    assert again.status_code == 200 and again.json()["status"] == "exists"
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": code},
            "env": {"MODEL_NAME": "digits"},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    assert created.status_code == 201 and created.headers["Location"].endswith("/versions/v1")
    ready = await wait_for_version(api, names, "v1", "ready")
    assert ready["env"] == {"MODEL_NAME": "digits"} and ready["image"]["digest"]
    aliases = f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}/aliases"
    assert (await api.put(f"{aliases}/staging", json={"version": "v1"})).status_code == 200
    assert [a["name"] for a in (await api.get(aliases)).json()["items"]] == ["staging"]
    assert (await api.get(f"{aliases}/staging")).json()["target"]["version"] == "v1"
    async with httpx.AsyncClient(base_url=platform.api_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_an_unnamed_version_skips_a_default_name_a_user_took(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    endpoints = [{"name": "predict", "wsgi": "app:app"}]
    today = datetime.now(UTC).strftime("%Y%m%d")
    taken = await create_version(
        api, names, {"name": f"{today}.1", "code": {"blob": code}, "endpoints": endpoints}
    )
    assert taken.status_code == 201
    unnamed = await create_version(api, names, {"code": {"blob": code}, "endpoints": endpoints})
    assert unnamed.status_code == 201 and unnamed.json()["name"] == f"{today}.2"
