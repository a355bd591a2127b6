"""The builder's consumer: a build that keeps failing ends in build.failed, never in silence."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from dockyard_builder.service import Builder
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointSpec, EventType, Version
from dockyard_common.events import make_event
from dockyard_common.subjects import BLOB_BUCKET, blob_object_name
from dockyard_common.subscriptions import BUILD_CONSUMER
from tests.harness.archives import tar_gz


@dataclass
class _Metadata:
    num_delivered: int


class LastDelivery:
    """A JetStream message on its last allowed delivery (all the handler looks at)."""

    def __init__(self) -> None:
        self.metadata = _Metadata(num_delivered=BUILD_CONSUMER.max_deliver)

    async def in_progress(self) -> None:
        return None


async def test_the_last_failed_attempt_publishes_build_failed_with_the_reason(
    js: JetStreamContext, nats_client: NatsClient, tmp_path: Path
) -> None:
    owner = f"o{secrets.token_hex(4)}"
    code = tar_gz({"app.py": b"", "requirements.txt": b"tinydep==1.0\n"})
    digest = f"sha256:{hashlib.sha256(code).hexdigest()}"
    store = await js.object_store(BLOB_BUCKET)
    await store.put(blob_object_name(owner, "demo", digest), code)
    version = Version(
        owner=owner,
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob=digest),
        targets=["local-eu"],
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
    )
    # An index nobody answers: a transient failure, on the last delivery.
    settings = BuilderSettings(
        data_dir=tmp_path, pip_index_url="http://127.0.0.1:9/simple", pip_retries=1
    )
    outcomes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def collect(message: Any) -> None:
        await outcomes.put(json.loads(message.data))

    subscription = await nats_client.subscribe(
        f"dockyard.reports.{owner}.demo.web.{EventType.BUILDER_BUILD_FAILED}", cb=collect
    )
    try:
        event = make_event(
            EventType.VERSION_CREATED, data=version, event_id="e1", source="test", revision=1
        )
        await Builder(js, settings).handle(event, LastDelivery())  # type: ignore[arg-type]
        failed = await asyncio.wait_for(outcomes.get(), 10)
    finally:
        await subscription.unsubscribe()
    assert failed["data"]["status"] == "failed"
    assert failed["data"]["error"].startswith(f"gave up after {BUILD_CONSUMER.max_deliver}")
    assert "did not answer" in failed["data"]["error"]
