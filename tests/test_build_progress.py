"""Builds report their progress in bytes before they report the outcome."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version

pytestmark = pytest.mark.e2e

VALOHAI_YAML = b"""\
- endpoint:
    name: predict
    image: python:3.11-slim
    wsgi: app:app
    files:
      - name: model
        path: model.bin
"""
APP = b"def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'']\n"


async def test_progress_events_count_the_bytes_and_precede_the_outcome(
    api: httpx.AsyncClient, nats_client: NatsClient, names: Names
) -> None:
    seen: list[dict[str, object]] = []
    built = asyncio.Event()

    async def collect(message: Msg) -> None:
        event = json.loads(message.data)
        seen.append(event)
        if event["type"] in ("version.built", "version.build.failed"):
            built.set()

    subscription = await nats_client.subscribe(
        f"dockyard.events.{names.owner}.{names.project}.{names.deployment}.version.>", cb=collect
    )
    try:
        await put_deployment(api, names, ["local-eu"])
        model = os.urandom(3 * 1024 * 1024)
        code = await upload_blob(api, names, tar_gz({"app.py": APP, "valohai.yaml": VALOHAI_YAML}))
        created = await create_version(
            api,
            names,
            {
                "name": "v1",
                "code": {"blob": code},
                "files": {"predict": {"model": await upload_blob(api, names, model)}},
            },
        )
        assert created.status_code == 201, created.text
        await asyncio.wait_for(built.wait(), 30)
    finally:
        await subscription.unsubscribe()
    types = [event["type"] for event in seen]
    assert "version.built" in types, types
    progress = [e["data"] for e in seen if e["type"] == "version.build.progress"]
    assert progress, f"no version.build.progress among {types}"
    last = progress[-1]
    assert isinstance(last, dict)
    assert last["phase"] == "layers" and last["bytes_done"] == last["bytes_total"]
    assert int(last["bytes_total"]) >= len(model)
    assert types.index("version.build.progress") < types.index("version.built")
    await wait_for_version(api, names, "v1", "ready")
