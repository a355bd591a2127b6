"""An endpoint's life on two local targets: replicas, crashes, status events, logs, stop, and
a scheduler restart that adopts what runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from dockyard_common.runtime import connect_nats
from dockyard_platform.servers import start_nats
from tests.harness.archives import tar_gz
from tests.harness.fixtures import Names, RunningPlatform, start_platform_process
from tests.harness.flows import (
    create_version,
    project_path,
    put_deployment,
    upload_blob,
    wait_for_version,
)
from tests.harness.replicas import replica_get, server_processes

pytestmark = [pytest.mark.e2e]

APP = b"""\
import os

print(f"model loaded pid={os.getpid()}", flush=True)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"pid={os.getpid()}".encode()]
"""


class EventLog:
    """Every event published about one owner, as it arrives (core NATS sees stream subjects)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    async def on_message(self, message: Msg) -> None:
        self.seen.append((time.monotonic(), json.loads(message.data)))
        self._changed.set()

    def types(self) -> list[str]:
        return [event["type"] for _, event in self.seen]

    async def wait_for(self, event_type: str, after: int = 0, within_s: float = 30.0) -> int:
        """The index of the first ``event_type`` event at or after ``after``."""
        deadline = time.monotonic() + within_s
        while True:
            for index in range(after, len(self.seen)):
                if self.seen[index][1]["type"] == event_type:
                    return index
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event_type} after #{after}; seen {self.types()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


@pytest.fixture
async def events(nats_client: NatsClient, names: Names) -> AsyncIterator[EventLog]:
    log = EventLog()
    subscription = await nats_client.subscribe(
        f"dockyard.events.{names.owner}.>", cb=log.on_message
    )
    yield log
    await subscription.unsubscribe()


async def pid_behind(http: httpx.AsyncClient, upstream: str) -> int:
    return int((await replica_get(upstream)).text.removeprefix("pid="))


processes_of = server_processes


async def submit(api: httpx.AsyncClient, names: Names, version: str, replicas: int) -> None:
    code = await upload_blob(api, names, tar_gz({"app.py": APP}))
    created = await create_version(
        api,
        names,
        {
            "name": version,
            "code": {"blob": code},
            "endpoints": [{"name": "predict", "wsgi": "app:app"}],
            "replicas": {"predict": {"min": replicas, "max": replicas}},
        },
    )
    assert created.status_code == 201, created.text


async def upstreams_by_target(
    api: httpx.AsyncClient, names: Names, version: str
) -> dict[str, list[str]]:
    url = f"{project_path(names)}/deployments/{names.deployment}/versions/{version}"
    states = (await api.get(url)).json()["endpoint_states"]
    return {s["target"]: sorted(s["upstreams"]) for s in states}


async def test_two_replicas_on_two_targets_crash_recover_log_and_stop(
    api: httpx.AsyncClient, names: Names, events: EventLog, platform: RunningPlatform
) -> None:
    await put_deployment(api, names, ["local-eu", "local-us"])
    await submit(api, names, "v1", replicas=2)
    built = await events.wait_for("version.built")
    ready = await events.wait_for("version.ready", built)
    print(
        f"\nversion.built -> ready on both targets: "
        f"{events.seen[ready][0] - events.seen[built][0]:.2f} s"
    )
    version = await wait_for_version(api, names, "v1", "ready")
    assert len(version["endpoint_states"]) == 2
    upstreams = await upstreams_by_target(api, names, "v1")
    async with httpx.AsyncClient(timeout=5) as http:
        for target, urls in upstreams.items():
            assert len(urls) == 2, f"{target} serves from {urls}"
            assert all(url.startswith("unix:") for url in urls), urls
        pids = {t: {await pid_behind(http, u) for u in urls} for t, urls in upstreams.items()}
        assert all(len(p) == 2 for p in pids.values())

        # Logs: every replica's captured output, per target.
        logs_url = (
            f"{project_path(names)}/deployments/{names.deployment}/versions/v1/endpoints/"
            "predict/logs"
        )
        logs = (await api.get(logs_url, params={"tail": 5})).json()
        assert [(t["target"], t["region"], t["error"]) for t in logs["targets"]] == [
            ("local-eu", "eu", None),
            ("local-us", "us", None),
        ]
        for entry in logs["targets"]:
            assert [r["replica"] for r in entry["replicas"]] == [0, 1]
            loaded = {line for r in entry["replicas"] for line in r["lines"] if "loaded" in line}
            assert loaded == {f"model loaded pid={pid}" for pid in pids[entry["target"]]}
        only_us = (await api.get(logs_url, params={"target": "local-us"})).json()
        assert [t["target"] for t in only_us["targets"]] == ["local-us"]
        for params, url in (({"target": "local-mars"}, logs_url), ({}, logs_url[:-13] + "x/logs")):
            missing = await api.get(url, params=params)
            assert missing.status_code == 404, missing.text

        # One replica killed: the endpoint serves from the other, then from two again.
        mark = len(events.seen)
        victim = min(pids["local-eu"])
        os.kill(victim, signal.SIGKILL)
        scaled = await events.wait_for("endpoint.scaled", mark)
        assert len(events.seen[scaled][1]["data"]["upstreams"]) == 1
        assert "exited" in events.seen[scaled][1]["data"]["reason"]
        await events.wait_for("endpoint.scaled", scaled + 1)
        assert "version.degraded" not in events.types()[mark:]

        # Both replicas of a target killed: the version is degraded, then ready again.
        mark = len(events.seen)
        for pid in pids["local-us"]:
            os.kill(pid, signal.SIGKILL)
        degraded = await events.wait_for("version.degraded", mark)
        await events.wait_for("version.ready", degraded)
        again = await upstreams_by_target(api, names, "v1")
        deadline = time.monotonic() + 10
        while len(again["local-us"]) < 2:  # ready from the first replica back; then two
            assert time.monotonic() < deadline, f"local-us never had two replicas again: {again}"
            await asyncio.sleep(0.05)
            again = await upstreams_by_target(api, names, "v1")
        new_pids = {await pid_behind(http, u) for u in again["local-us"]}
        assert len(new_pids) == 2 and not new_pids & pids["local-us"]

    # Stop: every process of the version goes.
    prefix = f"/{names.owner}/{names.project}/{names.deployment}/v1/predict"
    assert len(processes_of(prefix)) >= 4
    stopped = await api.delete(f"{project_path(names)}/deployments/{names.deployment}/versions/v1")
    assert stopped.status_code == 202, stopped.text
    await wait_for_version(api, names, "v1", "stopped")
    deadline = time.monotonic() + 10
    while processes_of(prefix):
        assert time.monotonic() < deadline, f"still running: {processes_of(prefix)}"
        await asyncio.sleep(0.05)


def start_scheduler(nats_url: str, data_dir: Path, *, keep: bool) -> subprocess.Popen[bytes]:
    """A scheduler process of the test's own, on the platform's NATS and data directory."""
    env = dict(
        os.environ,
        DOCKYARD_NATS_URL=nats_url,
        DOCKYARD_DATA_DIR=str(data_dir),
        DOCKYARD_KEEP_REPLICAS_ON_EXIT=str(keep).lower(),
    )
    log = (data_dir / "logs" / "test-scheduler.log").open("ab")
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "dockyard_scheduler"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(15)


@pytest.mark.slow
async def test_a_restarted_scheduler_adopts_running_replicas_without_duplicates(
    tmp_path: Path, names: Names
) -> None:
    # A platform of its own whose scheduler the test starts and restarts: NATS is the
    # test's (two platforms on one NATS would share the services' durable consumers).
    nats = start_nats(tmp_path / "nats")
    data = tmp_path / "platform"
    platform = start_platform_process(
        data, {"DOCKYARD_NATS_URL": nats.url, "DOCKYARD_WITHOUT": '["scheduler"]'}
    )
    prefix = f"/{names.owner}/{names.project}/{names.deployment}/v1/predict"
    schedulers = [start_scheduler(nats.url, data, keep=True)]
    try:
        async with (
            httpx.AsyncClient(
                base_url=platform.api_url,
                headers={"Authorization": f"Bearer {platform.admin_token}"},
            ) as api,
            httpx.AsyncClient(timeout=5) as http,
        ):
            await put_deployment(api, names, ["local-eu"])
            await submit(api, names, "v1", replicas=2)
            await wait_for_version(api, names, "v1", "ready")
            upstreams = (await upstreams_by_target(api, names, "v1"))["local-eu"]
            pids = {await pid_behind(http, url) for url in upstreams}
            # The scheduler stops as for an upgrade: its replicas keep serving.
            assert stop(schedulers[0]) == 0
            assert processes_of(prefix) == pids, "the replicas did not outlive the scheduler"

            # The new scheduler's first pass reports what it adopted (the record changes only
            # if something did: here nothing should).
            reports = await connect_nats(nats.url, name="lifecycle-test")
            adopted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            async def heard(message: Msg) -> None:
                await adopted.put(json.loads(message.data)["data"])

            await reports.subscribe(
                f"dockyard.reports.{names.owner}.{names.project}.{names.deployment}."
                "scheduler.endpoint.observed",
                cb=heard,
            )
            try:
                schedulers.append(start_scheduler(nats.url, data, keep=False))
                state = await asyncio.wait_for(adopted.get(), 20)
            finally:
                await reports.close()
            assert state["state"] == "ready", state
            assert sorted(state["upstreams"]) == upstreams
            assert {await pid_behind(http, url) for url in upstreams} == pids
            assert processes_of(prefix) == pids, "the restarted scheduler started duplicates"
            routed = await http.get(f"{platform.router_url}{prefix}/")
            assert routed.status_code == 200, routed.text
            assert int(routed.text.removeprefix("pid=")) in pids
        assert stop(schedulers[1]) == 0
        assert processes_of(prefix) == set()
    finally:
        for scheduler in schedulers:
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait()
        platform.stop()
        nats.stop()
        for pid in processes_of(prefix):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
