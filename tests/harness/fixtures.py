"""Session-wide real servers and the running platform, shared by every test that needs them.

Tests isolate themselves by unique names (an owner per test), never by restarting servers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from redis.asyncio import Redis

from dockyard_common.runtime import connect_nats, connect_redis, provision_jetstream
from dockyard_platform.servers import free_port, start_nats
from tests.harness.infrastructure import Infrastructure, start_infrastructure
from tests.harness.registry import Registry, busybox_layout, push_with_skopeo, run_registry

__all__ = [
    "WEBHOOK_TEST_SETTINGS",
    "Names",
    "RunningPlatform",
    "admin_client",
    "api",
    "busybox_base",
    "infrastructure",
    "js",
    "names",
    "nats_client",
    "platform",
    "redis_client",
    "registry",
    "start_platform_process",
    "wheelhouse",
]


WEBHOOK_TEST_SETTINGS = {
    "DOCKYARD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "DOCKYARD_WEBHOOK_RETRY_BASE_S": "0.05",
    "DOCKYARD_WEBHOOK_RETRY_MAX_DELAY_S": "0.5",
    "DOCKYARD_WEBHOOK_LANE_SCAN_S": "0.2",
}
"""Webhook settings of the test platforms: a loopback receiver allowed, fast retries."""


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    """Real NATS (JetStream) and Redis for the whole session."""
    with start_infrastructure(tmp_path_factory.mktemp("infrastructure")) as servers:
        yield servers


@pytest.fixture(scope="session")
async def nats_client(infrastructure: Infrastructure) -> AsyncIterator[NatsClient]:
    """A NATS connection for the session."""
    client = await connect_nats(infrastructure.nats_url, name="dockyard-tests")
    yield client
    await client.drain()


@pytest.fixture(scope="session")
async def js(nats_client: NatsClient) -> JetStreamContext:
    """JetStream with the platform's streams and buckets provisioned."""
    context = nats_client.jetstream()
    await provision_jetstream(context)
    return context


@pytest.fixture
async def private_js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    """JetStream on a nats-server of the test's own, provisioned: for a test whose records
    the platforms other tests run on the shared server would act on."""
    server = start_nats(tmp_path / "private-nats")
    client = await connect_nats(server.url, name="dockyard-tests-private")
    try:
        context = client.jetstream()
        await provision_jetstream(context)
        yield context
    finally:
        await client.close()
        server.stop()


@pytest.fixture
async def redis_client(infrastructure: Infrastructure) -> AsyncIterator[Redis]:
    """A Redis client (the platform's own helper: no hidden retries)."""
    client = connect_redis(infrastructure.redis_url)
    yield client
    await client.aclose()


@dataclass(frozen=True)
class Names:
    """Names unique to one test, so tests never see each other's resources."""

    owner: str
    project: str
    deployment: str


@pytest.fixture
def names() -> Names:
    """An owner, project and deployment no other test uses."""
    return Names(owner=f"o{secrets.token_hex(4)}", project="demo", deployment="web")


@dataclass
class RunningPlatform:
    """The embedded platform started the way ``make run`` starts it."""

    process: subprocess.Popen[str]
    api_url: str
    router_url: str
    admin_token: str
    data_dir: Path
    output: list[str]

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a person would; the launcher's exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


def start_platform_process(
    data_dir: Path,
    extra_env: dict[str, str],
    timeout: float = 90.0,
    *,
    ports: tuple[int, int] | None = None,
    kept_token: bool = False,
) -> RunningPlatform:
    """Run ``python -m dockyard_platform`` (what ``dockyard up`` runs) and return once it
    says it is running: on free ports unless ``ports`` (API, router) are given, with an admin
    token of the test's own (or ``extra_env``'s) unless ``kept_token`` (then the one the
    platform keeps in its data directory)."""
    api_port, router_port = ports or (free_port(), free_port())
    token = extra_env.get("DOCKYARD_ADMIN_TOKEN") or secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "DOCKYARD_API_PORT": str(api_port),
        "DOCKYARD_ROUTER_PORT": str(router_port),
        "DOCKYARD_ADMIN_TOKEN": token,
        "DOCKYARD_DATA_DIR": str(data_dir),
        **extra_env,
    }
    if kept_token:
        del env["DOCKYARD_ADMIN_TOKEN"]
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard_platform"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    output: list[str] = []
    started = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                started.set()

    threading.Thread(target=read_output, daemon=True).start()
    if not started.wait(timeout):
        process.kill()
        process.wait()
        logs = "".join(output)
        raise AssertionError(f"the platform did not start within {timeout} s; it printed:\n{logs}")
    if kept_token:
        [line] = [line for line in output if line.lstrip().startswith("Admin token")]
        token = line.rpartition(": ")[2].strip()
    return RunningPlatform(
        process=process,
        api_url=f"http://127.0.0.1:{api_port}",
        router_url=f"http://127.0.0.1:{router_port}",
        admin_token=token,
        data_dir=data_dir,
        output=output,
    )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of wheels the session platform's builder also looks in (tests put theirs
    here instead of needing a package index)."""
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="session")
def platform(
    infrastructure: Infrastructure, tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path
) -> Iterator[RunningPlatform]:
    """The four services on the session's NATS and Redis, started as ``make run`` does."""
    running = start_platform_process(
        tmp_path_factory.mktemp("platform"),
        {
            "DOCKYARD_PIP_FIND_LINKS": json.dumps([str(wheelhouse)]),
            "DOCKYARD_NATS_URL": infrastructure.nats_url,
            "DOCKYARD_REDIS_URL": infrastructure.redis_url,
            # The git tests serve repositories from the local disk, the file tests serve
            # model files over plain http on loopback.
            "DOCKYARD_GIT_ALLOW_FILE_URLS": "true",
            "DOCKYARD_FILES_ALLOW_HTTP": "true",
            # The webhook tests receive on loopback and retry in milliseconds, not minutes.
            **WEBHOOK_TEST_SETTINGS,
        },
    )
    yield running
    died = running.process.poll() is not None
    running.stop()
    if died:
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted((running.data_dir / "logs").glob("*.log"))
        )
        raise AssertionError(
            f"the platform exited during the session:\n{''.join(running.output)}\n{logs}"
        )


def admin_client(platform: RunningPlatform) -> httpx.AsyncClient:
    """An HTTP client of a platform's API as its admin (use it with ``async with``)."""
    return httpx.AsyncClient(
        base_url=platform.api_url,
        headers={"Authorization": f"Bearer {platform.admin_token}"},
        timeout=10.0,
    )


@pytest.fixture
async def api(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the session platform's API, authenticated as the admin."""
    async with admin_client(platform) as client:
        yield client


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real OCI registry on loopback for the session."""
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def busybox_base(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A runnable busybox base image in the session registry; its name."""
    layout = busybox_layout(tmp_path_factory.mktemp("busybox-layout"))
    name = f"{registry.host}/base/busybox:1"
    push_with_skopeo(layout, "busybox", name)
    return name
