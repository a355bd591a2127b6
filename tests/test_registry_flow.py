"""With a registry configured, a version's image is complete, pushed there, and still runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import (
    WSGI_APP,
    create_version,
    put_deployment,
    upload_blob,
    wait_for_version,
)
from tests.harness.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_a_version_is_pushed_complete_and_served_from_its_app_layers(
    tmp_path: Path, names: Names, registry: Registry, busybox_base: str
) -> None:
    # A platform of its own (NATS included): its builder pushes to the session registry.
    platform: RunningPlatform = start_platform_process(
        tmp_path / "platform", {"DOCKYARD_REGISTRY_URL": registry.url}
    )
    try:
        async with admin_client(platform) as api:
            await put_deployment(api, names, ["local-eu"])
            code = await upload_blob(api, names, tar_gz({"app.py": WSGI_APP}))
            created = await create_version(
                api,
                names,
                {
                    "name": "v1",
                    "code": {"blob": code},
                    "endpoints": [{"name": "predict", "image": busybox_base, "wsgi": "app:app"}],
                },
            )
            assert created.status_code == 201, created.text
            ready = await wait_for_version(api, names, "v1", "ready")
            image = ready["image"]
            repository = (
                f"{registry.host}/dockyard/{names.owner}/{names.project}/{names.deployment}"
            )
            assert image["reference"] == f"{repository}@{image['digest']}"
            assert image["base_included"] and image["layers"][0]["role"] == "base"
            url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.get(f"{url}/v1/predict/")
            assert answer.status_code == 200, answer.text
    finally:
        platform.stop()
    skopeo = await asyncio.create_subprocess_exec(
        *["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repository}:v1"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await skopeo.communicate()
    assert skopeo.returncode == 0, err.decode()
    assert json.loads(out)["mediaType"] == "application/vnd.oci.image.index.v1+json"
