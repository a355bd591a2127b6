"""The builder's consumer: a build that keeps failing ends in build.failed, never in silence."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from dockyard_builder.service import Builder
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointSpec, EventType, Version
from dockyard_common.events import make_event
from dockyard_common.runtime import EventPublisher, connect_nats, provision_jetstream
from dockyard_common.subjects import BLOB_BUCKET, blob_object_name
from dockyard_common.subscriptions import BUILD_CONSUMER
from dockyard_platform.servers import start_nats
from tests.harness.archives import tar_gz
from tests.harness.wheels import make_wheel


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


class GatedIndex:
    """A package index on loopback that answers slowly until the test lets it finish: a
    build installing from it takes as long as the test wants, without a sleep in the test.

    The first answer trickles out a byte at a time (a slow index, not a dead one: pip's read
    timeout never fires and it never retries) until :attr:`release` is set."""

    def __init__(self, wheels: Path) -> None:
        self.requests = 0
        self.asked = threading.Event()
        self.release = threading.Event()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.requests += 1
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                if self.path.startswith("/simple/"):
                    links = "".join(
                        f'<a href="/files/{w.name}">{w.name}</a>' for w in wheels.glob(f"{name}-*")
                    )
                    body = f"<html><body>{links}</body></html>".encode()
                    kind = "text/html"
                elif (wheels / name).is_file():
                    body = (wheels / name).read_bytes()
                    kind = "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                gate.asked.set()
                sent = 0
                while sent < len(body) and not gate.release.wait(0.5):
                    self.wfile.write(body[sent : sent + 1])
                    self.wfile.flush()
                    sent += 1
                self.wfile.write(body[sent:])

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GatedIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


async def test_a_quick_build_finishes_while_a_slow_one_is_still_installing(
    tmp_path: Path,
) -> None:
    server = start_nats(tmp_path / "nats")
    client = await connect_nats(server.url, name="dockyard-tests-builds")
    make_wheel(tmp_path / "wheels", "slowdep", "1.0", "ANSWER = 1\n")
    builder: asyncio.Task[None] | None = None
    try:
        js = client.jetstream()
        await provision_jetstream(js)
        store = await js.object_store(BLOB_BUCKET)
        reports: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        async def collect(message: Any) -> None:
            event = json.loads(message.data)
            await reports.put((event["data"]["name"], event["type"]))

        await client.subscribe("dockyard.reports.acme.demo.web.builder.build.*", cb=collect)
        with GatedIndex(tmp_path / "wheels") as index:
            settings = BuilderSettings(
                data_dir=tmp_path / "data", pip_index_url=index.url, pip_retries=1
            )
            assert settings.build_concurrency == 2
            builder = asyncio.create_task(Builder(js, settings).run())
            publisher = EventPublisher(js, source="test")
            for name, files in (
                ("slow", {"app.py": b"", "requirements.txt": b"slowdep==1.0\n"}),
                ("quick", {"app.py": b""}),
            ):
                code = tar_gz(files)
                digest = f"sha256:{hashlib.sha256(code).hexdigest()}"
                await store.put(blob_object_name("acme", "demo", digest), code)
                version = Version(
                    owner="acme",
                    project="demo",
                    deployment="web",
                    name=name,
                    code=CodeRef(blob=digest),
                    targets=["local-eu"],
                    endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
                )
                await publisher.publish(
                    EventType.VERSION_CREATED, version, resource_key=f"v.{name}", revision=1
                )
            assert await asyncio.to_thread(index.asked.wait, 30), "the slow build never asked"
            outcome = await _next_outcome(reports, 30)
            assert outcome == ("quick", EventType.BUILDER_BUILD_SUCCEEDED)
            # The slow build is still reading its index's first answer: not retried, not done.
            assert index.requests == 1
            index.release.set()
            outcome = await _next_outcome(reports, 60)
            assert outcome == ("slow", EventType.BUILDER_BUILD_SUCCEEDED)
    finally:
        if builder is not None:
            builder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await builder
        await client.close()
        server.stop()


async def _next_outcome(
    reports: asyncio.Queue[tuple[str, str]], timeout_s: float
) -> tuple[str, str]:
    """The next build that ended (started reports skipped)."""
    while True:
        name, kind = await asyncio.wait_for(reports.get(), timeout_s)
        if kind != EventType.BUILDER_BUILD_STARTED:
            return name, kind
