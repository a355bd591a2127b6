"""Existing objects for schemathesis to aim at, and how generated requests are steered to them.

Generated names are mostly malformed or unknown, so left alone nearly every request stops at
name validation or at the first lookup. Steering replaces part of the generated values by
names of objects that exist (or well-formed names of objects that do not), so the requests
reach the handlers' deep code. The steering functions are pure: they list the variants of a
generated value, and the test's hooks let Hypothesis choose among them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    put_deployment,
    upload_blob,
    wait_for_version,
)

__all__ = ["World", "body_variants", "create_world", "path_variants"]

NAMES = Names(owner="schemathesis", project="demo", deployment="web")
VERSION = "v1"
ALIAS = "production"
TARGET = "schemathesis-target"
VALOHAI_YAML = b"""\
- endpoint:
    name: predict
    image: python:3.11-slim
    wsgi: app:app
"""
# Well-formed values that name nothing (a GET answers 404, a PUT creates the object).
ABSENT = {"token_id": "0" * 16, "hexdigest": "0" * 64, "target": "schemathesis-other"}
ABSENT_NAME = "other"
DEPLOYMENT_PATH = "/v1/projects/{owner}/{project}/deployments/{deployment}"


@dataclass(frozen=True)
class World:
    """What exists: the value of each path parameter that names an existing object."""

    existing: dict[str, str]

    @property
    def code(self) -> str:
        """The digest of the uploaded code (an app and its valohai.yaml)."""
        return f"sha256:{self.existing['hexdigest']}"


async def create_world(api: httpx.AsyncClient) -> World:
    """An owner with a project, a deployment, a ready version, an alias, a token and a target.

    ``api`` holds the platform admin token.
    """
    await put_deployment(api, NAMES, ["local-eu"])
    code = await upload_blob(api, NAMES, tar_gz({"app.py": WSGI_APP, "valohai.yaml": VALOHAI_YAML}))
    created = await create_version(api, NAMES, {"name": VERSION, "code": {"blob": code}})
    assert created.status_code == 201, created.text
    await wait_for_version(api, NAMES, VERSION, "ready")
    deployment = f"/v1/projects/{NAMES.owner}/{NAMES.project}/deployments/{NAMES.deployment}"
    alias = await api.put(f"{deployment}/aliases/{ALIAS}", json={"version": VERSION})
    assert alias.status_code == 200, alias.text
    token = await api.post(f"/v1/owners/{NAMES.owner}/tokens", json={"role": "viewer"})
    assert token.status_code == 201, token.text
    target = await api.put(f"/v1/targets/{TARGET}", json={"region": "fuzz"})
    assert target.status_code == 201, target.text
    return World(
        existing={
            "owner": NAMES.owner,
            "project": NAMES.project,
            "deployment": NAMES.deployment,
            "version": VERSION,
            "alias": ALIAS,
            "token_id": token.json()["id"],
            "hexdigest": code.removeprefix("sha256:"),
            "target": TARGET,
        }
    )


def path_variants(world: World, path: str, generated: dict[str, Any]) -> list[dict[str, Any]]:
    """As generated; naming existing objects (twice: the likeliest to reach deep code); or
    the parents existing and the last parameter a well-formed name of nothing."""
    if not generated:
        return [generated]
    existing = {name: world.existing.get(name, value) for name, value in generated.items()}
    leaf = re.findall(r"\{(\w+)\}", path)[-1]
    absent = {**existing, leaf: ABSENT.get(leaf, ABSENT_NAME)}
    return [generated, existing, existing, absent]


def body_variants(world: World, operation: str, generated: Any) -> list[Any]:
    """As generated, and for operations whose body names other objects, with those names
    pointed at existing ones (or at a fresh well-formed name)."""
    steer = _BODY_STEERING.get(operation)
    if steer is None or not isinstance(generated, dict):
        # An invalid body may be of any type: only a JSON object can be steered.
        return [generated]
    return [generated, *steer(world, generated)]


def _owner(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**body, "name": world.existing["owner"]}, {**body, "name": f"{NAMES.owner}-other"}]


def _deployment(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**body, "targets": ["local-eu"]}]


def _version(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    # Auto-named, with the uploaded code. Without "endpoints" it takes every endpoint of the
    # code's valohai.yaml and is accepted (a build starts), which is the deep path.
    steered = {key: value for key, value in body.items() if key != "name"}
    return [{**steered, "code": {"blob": world.code}}, {"code": {"blob": world.code}}]


def _alias(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    # The document does not say that exactly one of version or weights is needed: give each.
    steered = dict(body)
    if isinstance(body.get("regions"), dict) and body["regions"]:
        steered["regions"] = {"eu": {"version": VERSION}}
    return [
        {**steered, "version": VERSION, "weights": None},
        {**steered, "version": None, "weights": {VERSION: 90, ABSENT_NAME: 10}},
    ]


def _target(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**body, "region": "fuzz"}]


_BODY_STEERING: dict[str, Callable[[World, dict[str, Any]], list[dict[str, Any]]]] = {
    "POST /v1/owners": _owner,
    f"PUT {DEPLOYMENT_PATH}": _deployment,
    f"POST {DEPLOYMENT_PATH}/versions": _version,
    f"PUT {DEPLOYMENT_PATH}/aliases/{{alias}}": _alias,
    "PUT /v1/targets/{target}": _target,
}
