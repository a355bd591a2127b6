"""``DOCKYARD_ROUTER_WORKERS``: one router parent, its workers on one port, in one session.

Real processes on the session's NATS and Redis; the workers are seen through the heartbeats
they publish, as the API sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from dockyard_common.runtime.processes import stop_with_parent
from dockyard_platform.servers import free_port
from tests.harness.infrastructure import Infrastructure
from tests.harness.procs import alive, descendants, stat_fields
from tests.harness.router import listen_for_routers, workers_of

pytestmark = pytest.mark.e2e


def start_router(
    infrastructure: Infrastructure, port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """``python -m dockyard_router`` with two workers, in a session of its own as the
    embedded platform starts it."""
    env = dict(
        os.environ,
        DOCKYARD_NATS_URL=infrastructure.nats_url,
        DOCKYARD_REDIS_URL=infrastructure.redis_url,
        DOCKYARD_ROUTER_PORT=str(port),
        DOCKYARD_ROUTER_WORKERS="2",
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dockyard_router"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=stop_with_parent,  # gone with the test run, whatever happens
        )


def end(router: subprocess.Popen[bytes]) -> None:
    """Kill the router and its workers, if any are left (after a failed assertion)."""
    workers = descendants(router.pid)
    if router.poll() is None:
        router.kill()
        router.wait()
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


async def gone(pid: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


async def fresh_get(url: str) -> httpx.Response:
    """A GET on a new connection (a kept-alive one may belong to a killed worker)."""
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_workers_share_the_port_and_a_session_and_a_killed_one_is_replaced(
    infrastructure: Infrastructure, nats_client: NatsClient, tmp_path: Path
) -> None:
    heard = await listen_for_routers(nats_client)
    port = free_port()
    router = start_router(infrastructure, port, tmp_path / "router.log")
    try:
        first, second = await workers_of(router.pid, heard, 2, within_s=30)
        for worker in (first, second):
            # Same session (one CPU autogroup) as the parent; a process group of its own.
            assert stat_fields(worker)[3] == str(router.pid)
            assert stat_fields(worker)[2] == str(worker)
        health = f"http://127.0.0.1:{port}/healthz"
        assert (await fresh_get(health)).status_code == 200

        os.kill(first, signal.SIGKILL)
        await gone(first, within_s=5)
        # The other worker keeps the port answering while the killed one is replaced.
        assert (await fresh_get(health)).status_code == 200
        workers = await workers_of(router.pid, heard, 2, within_s=30)
        assert first not in workers and second in workers
        assert router.poll() is None

        router.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(router.wait, 40)
        assert code == 0, (tmp_path / "router.log").read_text()
        assert not any(alive(worker) for worker in workers)
    finally:
        end(router)


async def test_a_router_whose_workers_cannot_start_exits_with_an_error(
    infrastructure: Infrastructure, tmp_path: Path
) -> None:
    # The port is taken by a socket that does not share it (no SO_REUSEPORT).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router = start_router(infrastructure, taken.getsockname()[1], tmp_path / "router.log")
        try:
            code = await asyncio.to_thread(router.wait, 30)
        finally:
            end(router)
    log = (tmp_path / "router.log").read_text()
    assert code != 0, log
    assert "router.worker.failed" in log
    assert "address already in use" in log.lower()


async def test_a_worker_that_does_not_stop_is_killed_soon_after_a_second_signal(
    infrastructure: Infrastructure, nats_client: NatsClient, tmp_path: Path
) -> None:
    heard = await listen_for_routers(nats_client)
    router = start_router(infrastructure, free_port(), tmp_path / "router.log")
    try:
        stuck, other = await workers_of(router.pid, heard, 2, within_s=30)
        os.kill(stuck, signal.SIGSTOP)  # it cannot act on any signal but SIGKILL now
        router.send_signal(signal.SIGTERM)
        await gone(other, within_s=30)  # the other drains (no requests) and ends
        assert alive(stuck) and router.poll() is None
        started = time.monotonic()
        router.send_signal(signal.SIGTERM)  # a second signal: 5 s more at most
        code = await asyncio.to_thread(router.wait, 30)
        waited = time.monotonic() - started
        assert not alive(stuck)
        assert code == 0, (tmp_path / "router.log").read_text()
        assert 4 < waited < 15, waited
        assert "router.worker.killed" in (tmp_path / "router.log").read_text()
    finally:
        end(router)
