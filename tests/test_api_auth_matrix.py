"""Who may call what, for every route the API's OpenAPI document lists.

Each operation is classified once below; the test fails when a route is added without a
classification. Callers: no token, the platform admin, another owner's admin, and this
owner's viewer, deployer and admin tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client
from tests.harness.flows import WSGI_APP, create_version, put_deployment, upload_blob

pytestmark = pytest.mark.e2e

PLATFORM = "platform admin"
ANYONE = "any token"
RANKS = {"viewer": 0, "deployer": 1, "admin": 2}

REQUIRED: dict[tuple[str, str], str] = {
    ("POST", "/v1/owners"): PLATFORM,
    ("GET", "/v1/owners/{owner}"): "viewer",
    ("POST", "/v1/owners/{owner}/tokens"): "admin",
    ("GET", "/v1/owners/{owner}/tokens"): "admin",
    ("DELETE", "/v1/owners/{owner}/tokens/{token_id}"): "admin",
    ("GET", "/asyncapi"): ANYONE,
    ("GET", "/v1/events"): ANYONE,
    ("GET", "/v1/targets"): ANYONE,
    ("GET", "/v1/targets/{target}"): ANYONE,
    ("PUT", "/v1/targets/{target}"): PLATFORM,
    ("DELETE", "/v1/targets/{target}"): PLATFORM,
    ("GET", "/v1/regions"): ANYONE,
    ("PUT", "/v1/regions/{region}"): PLATFORM,
    ("GET", "/v1/projects/{owner}"): "viewer",
    ("GET", "/v1/projects/{owner}/{project}"): "viewer",
    ("PUT", "/v1/projects/{owner}/{project}"): "deployer",
    ("DELETE", "/v1/projects/{owner}/{project}"): "admin",
    ("HEAD", "/v1/projects/{owner}/{project}/blobs/sha256:{hexdigest}"): "viewer",
    ("PUT", "/v1/projects/{owner}/{project}/blobs/sha256:{hexdigest}"): "deployer",
    ("GET", "/v1/projects/{owner}/{project}/deployments"): "viewer",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}"): "viewer",
    ("PUT", "/v1/projects/{owner}/{project}/deployments/{deployment}"): "deployer",
    ("DELETE", "/v1/projects/{owner}/{project}/deployments/{deployment}"): "admin",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}/versions"): "viewer",
    ("POST", "/v1/projects/{owner}/{project}/deployments/{deployment}/versions"): "deployer",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version}"): "viewer",
    ("DELETE", "/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version}"): (
        "deployer"
    ),
    ("POST", "/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version}/start"): (
        "deployer"
    ),
    (
        "GET",
        "/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version}/endpoints/"
        "{endpoint}/logs",
    ): "viewer",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases"): "viewer",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases/{alias}"): "viewer",
    ("GET", "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases/{alias}/history"): (
        "viewer"
    ),
    ("PUT", "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases/{alias}"): "deployer",
    ("POST", "/v1/projects/{owner}/{project}/deployments/{deployment}/aliases/{alias}/rollback"): (
        "deployer"
    ),
    ("GET", "/v1/projects/{owner}/{project}/webhooks"): "viewer",
    ("POST", "/v1/projects/{owner}/{project}/webhooks"): "deployer",
    ("GET", "/v1/projects/{owner}/{project}/webhooks/{webhook_id}"): "viewer",
    ("DELETE", "/v1/projects/{owner}/{project}/webhooks/{webhook_id}"): "deployer",
    ("GET", "/v1/projects/{owner}/{project}/webhooks/{webhook_id}/deliveries"): "viewer",
    ("POST", "/v1/projects/{owner}/{project}/webhooks/{webhook_id}/test"): "deployer",
}

UNAUTHENTICATED_PATHS = {"/healthz", "/readyz", "/readyz/platform"}


@dataclass(frozen=True)
class Callers:
    """Bearer tokens of every kind of caller."""

    platform: str
    other_owner_admin: str
    own: dict[str, str]


async def issue_token(api: httpx.AsyncClient, owner: str, role: str) -> str:
    response = await api.post(f"/v1/owners/{owner}/tokens", json={"role": role})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture(scope="module")
async def world(platform: RunningPlatform) -> tuple[Names, Callers]:
    """Owner A with a project, deployment and version; owner B; tokens of every role."""
    names = Names(owner="authz-a", project="demo", deployment="web")
    async with admin_client(platform) as api:
        await put_deployment(api, names, ["local-eu"])
        code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
        created = await create_version(
            api,
            names,
            {
                "name": "v1",
                "code": {"blob": code},
                "endpoints": [{"name": "predict", "wsgi": "app:app"}],
            },
        )
        assert created.status_code in (201, 409), created.text
        assert (await api.post("/v1/owners", json={"name": "authz-b"})).status_code in (201, 409)
        callers = Callers(
            platform=platform.admin_token,
            other_owner_admin=await issue_token(api, "authz-b", "admin"),
            own={role: await issue_token(api, names.owner, role) for role in RANKS},
        )
    return names, callers


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if path not in UNAUTHENTICATED_PATHS
    ]


def concrete(path: str, names: Names) -> str:
    """The path with parameters filled by A's existing objects (or harmless unknown ones)."""
    values = {
        "owner": names.owner,
        "project": names.project,
        "deployment": names.deployment,
        "version": "v1",
        "target": "no-such-target",
        "region": "no-such-region",
        "token_id": "0" * 16,
        "hexdigest": "0" * 64,
        "alias": "production",
        "webhook_id": "wh_" + "0" * 16,
        "endpoint": "predict",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def call(client: httpx.AsyncClient, method: str, url: str, token: str | None) -> int:
    """The status of one request; the body is not read (the event feed never ends)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = b"{}" if method in ("POST", "PUT") else None
    headers["Content-Type"] = "application/json"
    async with client.stream(method, url, content=body, headers=headers) as response:
        return response.status_code


async def test_every_route_is_classified(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(base_url=platform.api_url) as client:
        document = (await client.get("/openapi.json")).json()
    unclassified = set(operations(document)) - set(REQUIRED)
    assert unclassified == set(), f"classify these routes in REQUIRED: {sorted(unclassified)}"


async def test_every_route_refuses_and_admits_exactly_the_right_callers(
    platform: RunningPlatform, world: tuple[Names, Callers]
) -> None:
    names, callers = world
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=10) as client:
        document = (await client.get("/openapi.json")).json()
        for method, path in operations(document):
            required = REQUIRED[(method, path)]
            url = concrete(path, names)

            def expect(
                who: str, status: int, ok: bool, operation: str = f"{method} {path}"
            ) -> None:
                if not ok:
                    failures.append(f"{operation} as {who}: got {status}")

            status = await call(client, method, url, None)
            expect("no token", status, status == 401)
            status = await call(client, method, url, "dy_not-a-real-token")
            expect("an unknown token", status, status == 401)
            status = await call(client, method, url, callers.platform)
            expect("platform admin", status, status not in (401, 403))

            owner_scoped = "{owner}" in path
            status = await call(client, method, url, callers.other_owner_admin)
            if owner_scoped:
                expect("another owner's admin", status, status == 404)
            elif required == PLATFORM:
                expect("another owner's admin", status, status == 403)
            for role, token in callers.own.items():
                status = await call(client, method, url, token)
                if required == PLATFORM:
                    allowed = False
                elif required == ANYONE:
                    allowed = True
                else:
                    allowed = RANKS[role] >= RANKS[required]
                expect(
                    f"own {role}", status, status not in (401, 403) if allowed else status == 403
                )
    assert failures == [], "\n".join(failures)


async def test_a_revoked_token_stops_working_at_once(
    platform: RunningPlatform, world: tuple[Names, Callers]
) -> None:
    names, callers = world
    async with httpx.AsyncClient(base_url=platform.api_url) as client:
        admin = {"Authorization": f"Bearer {callers.own['admin']}"}
        issued = await client.post(
            f"/v1/owners/{names.owner}/tokens", json={"role": "viewer"}, headers=admin
        )
        token, token_id = issued.json()["token"], issued.json()["id"]
        viewer = {"Authorization": f"Bearer {token}"}
        assert (await client.get(f"/v1/projects/{names.owner}", headers=viewer)).status_code == 200
        listed = await client.get(f"/v1/owners/{names.owner}/tokens", headers=admin)
        assert token_id in [t["id"] for t in listed.json()["items"]]
        assert "token" not in listed.json()["items"][0]
        revoked = await client.delete(f"/v1/owners/{names.owner}/tokens/{token_id}", headers=admin)
        assert revoked.status_code == 204
        assert (await client.get(f"/v1/projects/{names.owner}", headers=viewer)).status_code == 401
