"""Code with a requirements file runs with its packages, installed by the builder."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version
from tests.harness.wheels import make_wheel

pytestmark = pytest.mark.e2e

APP = """\
import {package}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{package}.ANSWER.encode()]
"""


async def test_an_endpoint_imports_what_its_requirements_name(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, wheelhouse: Path
) -> None:
    # A wheel in the platform's wheel directory keeps the test off any package index.
    package = f"tinydep_{names.owner.replace('-', '_')}"
    make_wheel(wheelhouse, package, "1.0", "ANSWER = 'from a wheel'\n")
    code = tar_gz(
        {
            "app.py": APP.format(package=package).encode(),
            "requirements.txt": f"{package}==1.0\n".encode(),
        }
    )
    await put_deployment(api, names, ["local-eu"])
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": await upload_blob(api, names, code)},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
        },
    )
    assert created.status_code == 201, created.text
    ready = await wait_for_version(api, names, "v1", "ready")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # A local target only: the wheelhouse its version's environment is made from, in no
    # manifest; no dependency layer (container targets') is built.
    assert [layer["role"] for layer in ready["image"]["layers"]] == [
        "code",
        "runner",
        f"wheels:{python}",
    ]
    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v1/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url)
    assert answer.status_code == 200 and answer.text == "from a wheel"
