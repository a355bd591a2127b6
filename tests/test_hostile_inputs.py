"""Nothing one request sends takes the platform down: YAML alias bombs, gzip bombs, git URLs
pointing inside, and names carrying control characters each get a small 4xx, at once,
while other owners keep being served, and leave nothing stored."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from dockyard_common.subjects import KV_BUCKETS
from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    ensure_project,
    project_path,
    put_deployment,
    upload_blob,
)
from tests.harness.hostile import deep_yaml, gzip_bomb, yaml_bomb

pytestmark = pytest.mark.e2e

HOSTILE_INPUTS: list[tuple[str, str, str]] = [
    (
        "valohai.yaml alias bomb",
        "valohai_yaml of 333 bytes: an endpoint description of six levels of ten nested aliases",
        "422 naming the expanded-node bound, body under 8 KB; another owner served meanwhile",
    ),
    (
        "valohai.yaml alias bomb in the code",
        "the same document as the root valohai.yaml of the code archive",
        "422 naming the expanded-node bound, body under 8 KB",
    ),
    (
        "valohai.yaml nested 50,000 deep",
        "valohai_yaml whose endpoint description is [[[[...]]]] 50,000 levels deep",
        "422 (not valid YAML / too deep), never a 500",
    ),
    (
        "gzip bomb as code",
        "a 2.2 MB tar.gz inflating to 22 files of 100 MiB of zeros, as a version's code blob",
        "422 hostile-archive naming the ratio; the blob is deleted from the store",
    ),
    (
        "gzip bomb uploaded again",
        "the same 2.2 MB PUT again to the project's blobs",
        "422 hostile-archive at once, the body never read",
    ),
    ("git URL https loopback", "https://127.0.0.1:1/x.git", "422: a loopback address"),
    ("git URL ssh loopback", "ssh://127.0.0.1/x.git", "422: a loopback address"),
    ("git URL scp-like loopback", "git@127.0.0.1:x.git", "422: a loopback address"),
    ("git URL IPv6 loopback", "https://[::1]/x.git", "422: a loopback address"),
    ("git URL name of this machine", "https://localhost/x.git", "422: a loopback address"),
    ("git URL cloud metadata", "https://169.254.169.254/x.git", "422: a cloud metadata address"),
    ("git URL private network", "ssh://10.0.0.1:2222/x.git", "422: a private address"),
    (
        "a huge invalid name echoed back",
        "env with one 500,000-character invalid name, and 2,000 invalid names",
        "422 under 8 KB naming env: the name and the list of errors shortened",
    ),
    (
        "names with control characters",
        "every name field and path part with \\n, \\r, \\t, \\x00, \\x7f, \\r\\n or a space",
        "422 naming the field, never a 5xx, nothing stored",
    ),
]
"""Each hostile input these tests send: (name, what was sent, the answer expected)."""


def _entry(name: str) -> tuple[str, str, str]:
    return next(entry for entry in HOSTILE_INPUTS if entry[0] == name)


MAX_PROBLEM_BYTES = 8192


def small_problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of a 422 that stays small."""
    assert response.status_code == 422, response.text[:500]
    assert len(response.content) < MAX_PROBLEM_BYTES, f"{len(response.content)} bytes"
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


async def other_owner(api: httpx.AsyncClient) -> str:
    """An owner and project of their own, as another tenant of the platform; its path."""
    other = Names(owner=f"o{secrets.token_hex(4)}", project="demo", deployment="web")
    await ensure_project(api, other)
    return project_path(other)


async def served_meanwhile(
    api: httpx.AsyncClient, path: str, hostile: asyncio.Task[httpx.Response]
) -> list[float]:
    """Time another owner's reads while ``hostile`` runs, and once after; the durations."""
    durations = []
    while True:
        started = time.perf_counter()
        answer = await api.get(path)
        durations.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        if hostile.done():
            return durations
        await asyncio.sleep(0.02)


# -- valohai.yaml ---------------------------------------------------------------------------


async def test_a_yaml_alias_bomb_is_refused_small_while_another_owner_is_served(
    api: httpx.AsyncClient, names: Names
) -> None:
    _, sent, _ = _entry("valohai.yaml alias bomb")
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    elsewhere = await other_owner(api)
    bomb = yaml_bomb(levels=6)
    assert len(bomb.encode()) == 333, sent
    hostile = asyncio.create_task(
        create_version(api, names, {"code": {"blob": code}, "valohai_yaml": bomb})
    )
    durations = await served_meanwhile(api, elsewhere, hostile)
    body = small_problem(await hostile)
    assert "expands to more than" in body["detail"]
    assert max(durations) < 1.0, f"another owner waited {max(durations):.2f} s"


async def test_a_yaml_alias_bomb_in_the_code_archive_is_refused_small(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = tar_gz({"app.py": WSGI_APP, "valohai.yaml": yaml_bomb(levels=6).encode()})
    response = await create_version(
        api, names, {"code": {"blob": await upload_blob(api, names, code)}}
    )
    assert "expands to more than" in small_problem(response)["detail"]


async def test_a_document_nested_50000_deep_is_bad_input_not_a_crash(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    response = await create_version(
        api, names, {"code": {"blob": code}, "valohai_yaml": deep_yaml(50_000)}
    )
    assert "valohai.yaml" in small_problem(response)["detail"]


# -- gzip bombs -----------------------------------------------------------------------------


async def test_a_gzip_bomb_is_refused_deleted_and_refused_again_at_once(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    bomb = gzip_bomb()
    assert len(bomb) < 2_300_000
    digest = await upload_blob(api, names, bomb)
    body = {"code": {"blob": digest}, "endpoints": [{"name": "predict", "wsgi": "app:app"}]}
    refused = small_problem(await create_version(api, names, body))
    assert refused["type"].endswith("/hostile-archive")
    assert "compression bomb" in refused["detail"]
    blob_url = f"{project_path(names)}/blobs/{digest}"
    assert (await api.head(blob_url)).status_code == 404, "the hostile blob is still stored"
    again = small_problem(await api.put(blob_url, content=bomb))
    assert again["type"].endswith("/hostile-archive")
    resubmitted = small_problem(await create_version(api, names, body))
    assert resubmitted["type"].endswith(("/hostile-archive", "/missing-blob"))
    versions = await api.get(f"{project_path(names)}/deployments/{names.deployment}/versions")
    assert versions.json()["items"] == []


# -- git URLs -------------------------------------------------------------------------------

GIT_URLS = [entry for entry in HOSTILE_INPUTS if entry[0].startswith("git URL")]


@pytest.mark.parametrize(("case", "url", "expected"), GIT_URLS, ids=[e[0] for e in GIT_URLS])
async def test_git_urls_reaching_inside_are_refused_naming_the_rule(
    api: httpx.AsyncClient, names: Names, case: str, url: str, expected: str
) -> None:
    await put_deployment(api, names, ["local-eu"])
    response = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"git": {"url": url, "ref": "main"}},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    detail = small_problem(response)["detail"]
    assert expected.removeprefix("422: ") in detail, detail
    assert "DOCKYARD_GIT_ALLOW_PRIVATE_ADDRESSES" in detail
    versions = await api.get(f"{project_path(names)}/deployments/{names.deployment}/versions")
    assert versions.json()["items"] == []


# -- names ----------------------------------------------------------------------------------

HOSTILE_SUFFIXES = ["\n", "\r", "\t", "\x00", "\x7f", "\r\n", " "]
"""Appended to a valid name; each also tried in the middle of it."""

Request = tuple[str, str, Any]
"""(method, path, JSON body or None)."""


def q(value: str) -> str:
    """A path segment carrying ``value`` as is (control characters percent-encoded)."""
    return urllib.parse.quote(value, safe="")


def name_fields(n: Names, code: str) -> dict[str, tuple[str, str, Callable[[str], Request]]]:
    """Every name the API takes: field → (a valid value, what the 422 names, the request)."""
    project = project_path(n)
    deployment = f"{project}/deployments/{n.deployment}"
    versions = f"{deployment}/versions"
    inline = [{"name": "predict", "wsgi": "app:app"}]
    with_file = [{"name": "predict", "wsgi": "app:app", "files": [{"name": "m", "path": "m"}]}]

    def version(**fields: Any) -> dict[str, Any]:
        return {"code": {"blob": code}, "endpoints": inline, **fields}

    return {
        "owner (new)": ("acme", "name", lambda v: ("POST", "/v1/owners", {"name": v})),
        "owner (path)": ("acme", "owner", lambda v: ("PUT", f"/v1/projects/{q(v)}/demo", {})),
        "project (path)": (
            "demo",
            "project",
            lambda v: ("PUT", f"/v1/projects/{n.owner}/{q(v)}", {}),
        ),
        "deployment (path)": (
            "web",
            "deployment",
            lambda v: ("PUT", f"{project}/deployments/{q(v)}", {"targets": ["local-eu"]}),
        ),
        "deployment targets": (
            "local-eu",
            "targets",
            lambda v: ("PUT", f"{project}/deployments/d2", {"targets": [v]}),
        ),
        "version (path)": ("v1", "version", lambda v: ("GET", f"{versions}/{q(v)}", None)),
        "version (new)": ("v1", "name", lambda v: ("POST", versions, version(name=v))),
        "endpoint (inline)": (
            "predict",
            "endpoints",
            lambda v: ("POST", versions, version(endpoints=[{"name": v, "wsgi": "app:app"}])),
        ),
        "endpoint (names)": (
            "predict",
            "endpoints",
            lambda v: ("POST", versions, version(endpoints=[v], valohai_yaml=_document("predict"))),
        ),
        "endpoint (valohai.yaml)": (
            "predict",
            "endpoint name",
            lambda v: ("POST", versions, {"code": {"blob": code}, "valohai_yaml": _document(v)}),
        ),
        "endpoint (files key)": (
            "predict",
            "files",
            lambda v: ("POST", versions, version(files={v: {"m": code}})),
        ),
        "endpoint (replicas key)": (
            "predict",
            "replicas",
            lambda v: ("POST", versions, version(replicas={v: {"min": 1}})),
        ),
        "file name (files)": (
            "m",
            "files",
            lambda v: (
                "POST",
                versions,
                version(endpoints=with_file, files={"predict": {v: code}}),
            ),
        ),
        "file name (inline)": (
            "m",
            "endpoints",
            lambda v: (
                "POST",
                versions,
                version(
                    endpoints=[
                        {"name": "predict", "wsgi": "app:app", "files": [{"name": v, "path": "m"}]}
                    ]
                ),
            ),
        ),
        "env name": ("MODEL", "env", lambda v: ("POST", versions, version(env={v: "x"}))),
        "alias (path)": (
            "production",
            "alias",
            lambda v: ("PUT", f"{deployment}/aliases/{q(v)}", {"version": "v1"}),
        ),
        "alias version": (
            "v1",
            "version",
            lambda v: ("PUT", f"{deployment}/aliases/prod", {"version": v}),
        ),
        "alias weights": (
            "v1",
            "weights",
            lambda v: ("PUT", f"{deployment}/aliases/prod", {"weights": {v: 50, "v2": 50}}),
        ),
        "alias region": (
            "local-eu",
            "regions",
            lambda v: ("PUT", f"{deployment}/aliases/prod", {"regions": {v: {"version": "v1"}}}),
        ),
        "target (path)": ("local-eu", "target", lambda v: ("GET", f"/v1/targets/{q(v)}", None)),
        "target (new)": (
            "t-hostile",
            "target",
            lambda v: ("PUT", f"/v1/targets/{q(v)}", {"region": "eu", "address": "127.0.0.9"}),
        ),
        "target region": (
            "eu",
            "region",
            lambda v: ("PUT", "/v1/targets/t-hostile", {"region": v, "address": "127.0.0.9"}),
        ),
        "webhook id": (
            "wh_0123456789abcdef",
            "webhook_id",
            lambda v: ("GET", f"{project}/webhooks/{q(v)}", None),
        ),
        "webhook event type": (
            "version.ready",
            "event_types",
            lambda v: (
                "POST",
                f"{project}/webhooks",
                {"url": "https://example.com/h", "event_types": [v]},
            ),
        ),
        "webhook deployment": (
            "web",
            "deployments",
            lambda v: (
                "POST",
                f"{project}/webhooks",
                {"url": "https://example.com/h", "deployments": [v]},
            ),
        ),
        "token id": (
            "0123456789abcdef",
            "token_id",
            lambda v: ("DELETE", f"/v1/owners/{n.owner}/tokens/{q(v)}", None),
        ),
        "blob digest": (
            "0" * 64,
            "hexdigest",
            lambda v: ("HEAD", f"{project}/blobs/sha256:{q(v)}", None),
        ),
        "logs endpoint": (
            "predict",
            "endpoint",
            lambda v: ("GET", f"{versions}/v1/endpoints/{q(v)}/logs", None),
        ),
    }


def _document(endpoint: str) -> str:
    """A valohai.yaml of one endpoint; the name written as a double-quoted YAML string, so a
    control character in it reaches the parser as that character."""
    quoted = endpoint.encode("unicode_escape").decode().replace('"', '\\"')
    return f'- endpoint:\n    name: "{quoted}"\n    image: python:3.11\n    wsgi: app:app\n'


async def stored_keys_with_control_characters(js: JetStreamContext) -> list[str]:
    """Every key of the platform's state of record holding a control character or a space."""
    found = []
    for bucket in KV_BUCKETS:
        kv = await js.key_value(bucket)
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            continue
        found += [f"{bucket}: {k!r}" for k in keys if any(c in k for c in "\n\r\t\x00\x7f ")]
    return found


async def test_every_name_with_a_control_character_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, names: Names, js: JetStreamContext
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    fields = name_fields(names, code)
    wrong: list[str] = []
    for field, (good, named, request) in fields.items():
        values = [good + s for s in HOSTILE_SUFFIXES] + [good[:1] + s + good[1:] for s in "\n\x00"]
        for value in values:
            method, path, body = request(value)
            response = await api.request(method, path, json=body)
            if response.status_code >= 500:
                wrong.append(f"{field} {value!r}: {response.status_code} {response.text[:200]}")
            elif response.status_code != 422:
                wrong.append(f"{field} {value!r}: {response.status_code}, not 422")
            elif method != "HEAD" and named not in response.text:
                wrong.append(f"{field} {value!r}: the 422 does not name {named!r}")
    assert not wrong, "\n".join(wrong)
    assert await stored_keys_with_control_characters(js) == []
    versions = await api.get(f"{project_path(names)}/deployments/{names.deployment}/versions")
    assert versions.json()["items"] == []
    deployments = await api.get(f"{project_path(names)}/deployments")
    assert [d["name"] for d in deployments.json()["items"]] == [names.deployment]
    webhooks = await api.get(f"{project_path(names)}/webhooks")
    assert webhooks.json()["items"] == []


async def test_what_an_error_echoes_back_is_shortened(api: httpx.AsyncClient, names: Names) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    inline = [{"name": "predict", "wsgi": "app:app"}]
    for env in ({"A" * 500_000 + "-": "x"}, {f"{n}-bad": "x" for n in range(2000)}):
        response = await create_version(
            api, names, {"code": {"blob": code}, "endpoints": inline, "env": env}
        )
        body = small_problem(response)
        assert body["detail"].startswith("body.env.")


async def test_the_event_feed_refuses_a_name_with_a_newline(
    api: httpx.AsyncClient, names: Names
) -> None:
    await ensure_project(api, names)
    for query in ({"owner": names.owner + "\n"}, {"project": "demo\n"}, {"deployment": "web\n"}):
        async with api.stream("GET", "/v1/events", params=query, timeout=5) as response:
            assert response.status_code == 422, query
