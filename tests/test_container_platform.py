"""End to end on a container target: submit over HTTP, build, run in containers, call through
the router, stop. Needs a Docker-compatible engine at ``DOCKER_HOST`` (skipped without one)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import httpx
import pytest

from dockyard_scheduler.drivers.container.engine import LABEL_KEY
from tests.harness.archives import tar_gz
from tests.harness.containers import busybox_image, engine_or_skip
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import (
    create_version,
    project_path,
    put_deployment,
    upload_blob,
    wait_for_version,
)

WAIT_S = 30.0


def _containers_of(engine: Any, names: Names) -> list[str]:
    """The names of the engine's containers running workloads of the test's owner."""
    # The low-level listing: the SDK's inspects each container, and fails on one that another
    # test removes meanwhile.
    found = engine.api.containers(all=True, filters={"label": LABEL_KEY})
    return [c["Names"][0] for c in found if c["Labels"][LABEL_KEY].startswith(f"{names.owner}.")]


@pytest.mark.docker
@pytest.mark.e2e
async def test_a_version_on_a_container_target_serves_through_the_router_until_stopped(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    engine = engine_or_skip()
    base = busybox_image(engine)
    target = f"box-{secrets.token_hex(3)}"
    registered = await api.put(
        f"/v1/targets/{target}", json={"region": "box", "kind": "container", "address": "127.0.3.9"}
    )
    assert registered.status_code in (200, 201), registered.text
    try:
        await _serve_then_stop(api, platform, names, engine, base, target)
    finally:
        engine.close()
        await _forget(api, names, target)


async def _serve_then_stop(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    engine: Any,
    base: str,
    target: str,
) -> None:
    await put_deployment(api, names, [target])
    code = await upload_blob(api, names, tar_gz({"www/index.html": b"hello from a container\n"}))
    # A hard-coded port, as many real servers have: fine in a container of its own.
    endpoint = {
        "name": "web",
        "image": base,
        "server-command": "echo serving on 8080 && exec busybox httpd -f -p 8080 -h www",
        "port": 8080,
        "replicas": {"min": 2, "max": 2},
    }
    created = await create_version(
        api, names, {"name": "v1", "code": {"blob": code}, "endpoints": [endpoint]}
    )
    assert created.status_code == 201, created.text

    ready = await wait_for_version(api, names, "v1", "ready", within_s=WAIT_S)
    (state,) = ready["endpoint_states"]
    assert state["state"] == "ready"
    assert len(state["upstreams"]) == 2
    url = (
        f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/web/index.html"
    )
    async with httpx.AsyncClient(timeout=10.0) as client:
        answers = [await client.get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4, answers[0].text
    assert answers[0].text == "hello from a container\n"
    assert len(_containers_of(engine, names)) == 2

    logs = await api.get(f"{_deployment(names)}/versions/v1/endpoints/web/logs", params={"tail": 5})
    assert logs.status_code == 200, logs.text
    (entry,) = logs.json()["targets"]
    assert (entry["target"], entry["error"]) == (target, None), entry
    assert [r["replica"] for r in entry["replicas"]] == [0, 1]
    assert all(r["lines"] == ["serving on 8080"] for r in entry["replicas"]), entry

    stopped = await api.delete(f"{_deployment(names)}/versions/v1")
    assert stopped.status_code in (200, 202, 204), stopped.text
    deadline = time.monotonic() + WAIT_S
    while _containers_of(engine, names):
        if time.monotonic() > deadline:
            left = _containers_of(engine, names)
            pytest.fail(f"containers still there {WAIT_S} s after the stop: {left}")
        await asyncio.sleep(0.1)


def _deployment(names: Names) -> str:
    return f"{project_path(names)}/deployments/{names.deployment}"


async def _forget(api: httpx.AsyncClient, names: Names, target: str) -> None:
    """Remove the test's deployment and target, so later tests see only the usual targets."""
    await api.delete(f"{_deployment(names)}/versions/v1")
    with contextlib.suppress(AssertionError):
        await wait_for_version(api, names, "v1", "stopped", within_s=WAIT_S)
    await api.delete(_deployment(names))
    forgotten = await api.delete(f"/v1/targets/{target}")
    assert forgotten.status_code in (204, 404), forgotten.text
