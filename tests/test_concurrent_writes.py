"""Concurrent writers never lose an update: CAS on every write, If-Match for clients."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    deploy_ready,
    put_deployment,
    upload_blob,
)

pytestmark = pytest.mark.e2e


async def _production_over_two_versions(api: httpx.AsyncClient, names: Names) -> str:
    """v1 and v2 ready on a new deployment; the path of its ``production`` alias."""
    await put_deployment(api, names, ["local-eu"])
    for version in ("v1", "v2"):
        await deploy_ready(api, names, version)
    return f"/v1/projects/{names.owner}/{names.project}/deployments/web/aliases/production"


async def test_concurrent_alias_changes_each_win_or_get_409_and_none_is_lost(
    api: httpx.AsyncClient, names: Names
) -> None:
    alias = await _production_over_two_versions(api, names)
    assert (await api.put(alias, json={"version": "v1"})).status_code == 200

    writes = [api.put(alias, json={"version": f"v{1 + i % 2}"}) for i in range(16)]
    statuses = [r.status_code for r in await asyncio.gather(*writes)]
    assert set(statuses) <= {200, 409}, statuses
    history = (await api.get(f"{alias}/history")).json()["items"]
    assert len(history) == 1 + statuses.count(200), (statuses, len(history))


async def test_an_alias_switch_with_a_stale_if_match_is_refused(
    api: httpx.AsyncClient, names: Names
) -> None:
    alias = await _production_over_two_versions(api, names)
    first = await api.put(alias, json={"version": "v1"})
    second = await api.put(alias, json={"version": "v2"})
    assert first.status_code == second.status_code == 200
    stale = await api.put(
        alias, json={"version": "v1"}, headers={"If-Match": first.headers["ETag"]}
    )
    assert stale.status_code == 412, stale.text
    fresh = await api.put(
        alias, json={"version": "v1"}, headers={"If-Match": second.headers["ETag"]}
    )
    assert fresh.status_code == 200, fresh.text


async def test_if_match_lets_exactly_one_of_two_stale_writers_through(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    url = f"/v1/projects/{names.owner}/{names.project}/deployments/web"
    read = await api.get(url)
    tag = read.headers["ETag"]
    first = await api.put(url, json={"targets": ["local-us"]}, headers={"If-Match": tag})
    second = await api.put(
        url, json={"targets": ["local-eu", "local-us"]}, headers={"If-Match": tag}
    )
    assert first.status_code == 200 and first.headers["ETag"] != tag
    assert second.status_code == 412
    assert second.json()["type"].endswith("/precondition-failed")
    assert (await api.get(url)).json()["targets"] == ["local-us"]
    missing = await api.put(f"{url}-new", json={"targets": ["local-eu"]}, headers={"If-Match": tag})
    assert missing.status_code == 412


async def test_concurrent_submissions_get_distinct_default_names(
    api: httpx.AsyncClient, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
    body = {"code": {"blob": code}, "endpoints": [{"name": "predict", "wsgi": "app:app"}]}
    responses = await asyncio.gather(*(create_version(api, names, body) for _ in range(12)))
    assert [r.status_code for r in responses] == [201] * 12
    suffixes = sorted(int(r.json()["name"].rsplit(".", 1)[1]) for r in responses)
    assert suffixes == list(range(1, 13))

    listing = f"/v1/projects/{names.owner}/{names.project}/deployments/web/versions"
    pages, cursor = [], None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(listing, params=params)).json()
        stamps = [v["created_at"] for v in page["items"]]
        assert stamps == sorted(stamps, reverse=True), "newest first"
        pages.append([v["name"] for v in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 2]
    listed = [name for page in pages for name in page]
    assert sorted(listed) == sorted(r.json()["name"] for r in responses)
    assert len(set(listed)) == 12
    bad = await api.get(listing, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
