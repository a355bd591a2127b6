"""Killing the delivering process in the middle of retries loses and reorders nothing.

This test runs its own NATS, API and delivering processes, so that the process it kills is
the only one delivering (the session platform's would otherwise take the lane over).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dockyard_platform.servers import ServerProcess, free_port, start_nats
from tests.harness.fixtures import WEBHOOK_TEST_SETTINGS
from tests.harness.receiver import receiver, wait_for_log

pytestmark = pytest.mark.e2e

EVENTS = 5


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the API was not ready within {within_s} s:\n{log.read_text()[-3000:]}")


async def test_killing_the_delivering_process_mid_retry_loses_no_delivery(
    nats_server: ServerProcess, tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(16)
    port = free_port()
    env = dict(
        os.environ,
        **WEBHOOK_TEST_SETTINGS,
        DOCKYARD_NATS_URL=nats_server.url,
        DOCKYARD_ADMIN_TOKEN=token,
        DOCKYARD_API_PORT=str(port),
        DOCKYARD_DATA_DIR=str(tmp_path),
        # A delivery held by the killed process is handed on after this long.
        DOCKYARD_WEBHOOK_ACK_WAIT_S="2",
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "webhooks-1", "webhooks-2")}
    # Both start at once: process start-up is most of this test's time.
    first = start("dockyard_api.webhooks", env, logs["webhooks-1"])
    processes = [start("dockyard_api", env, logs["api"]), first]
    api_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(api_url, processes[0], logs["api"])
        async with (
            receiver() as hook,
            httpx.AsyncClient(
                base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
            ) as api,
        ):
            failing = True
            hook.answer = lambda _: 500 if failing else 204
            for path, body in [
                ("/v1/targets/here", {"region": "eu", "kind": "local", "address": "127.0.1.1"}),
                ("/v1/projects/acme/demo", {}),
            ]:
                if path.startswith("/v1/projects"):
                    assert (await api.post("/v1/owners", json={"name": "acme"})).status_code == 201
                assert (await api.put(path, json=body)).status_code == 201
            created = await api.post(
                "/v1/projects/acme/demo/webhooks", json={"url": hook.url, "event_types": ["*"]}
            )
            assert created.status_code == 201, created.text
            for _ in range(EVENTS):
                placed = await api.put(
                    "/v1/projects/acme/demo/deployments/web", json={"targets": ["here"]}
                )
                assert placed.status_code in (200, 201), placed.text

            await hook.wait_for("three failed attempts", lambda got: len(got) >= 3)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            failing = False
            attempts_before = len(hook.got)
            processes.append(start("dockyard_api.webhooks", env, logs["webhooks-2"]))

            await hook.wait_for(
                f"{EVENTS} acknowledged events", lambda _: len(hook.acknowledged()) >= EVENTS
            )
            acknowledged = [d.event for d in hook.acknowledged()]
            revisions = [int(e["resourcerevision"]) for e in acknowledged]
            assert len(acknowledged) == EVENTS, f"an event was acknowledged twice: {revisions}"
            assert revisions == sorted(revisions), f"out of order after the kill: {revisions}"
            assert len(hook.got) > attempts_before, "the second process delivered nothing"
            webhook_id = created.json()["id"]
            records = await wait_for_log(
                api,
                f"/v1/projects/acme/demo/webhooks/{webhook_id}/deliveries",
                f"{EVENTS} delivered events",
                lambda log: [r["status"] for r in log] == ["delivered"] * EVENTS,
            )
            first_delivery = next(r for r in records if r["event_id"] == acknowledged[0]["id"])
            assert first_delivery["attempts"] >= 4, first_delivery
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
