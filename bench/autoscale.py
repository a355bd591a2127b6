"""Autoscaling on request load, and a start from zero, on the embedded platform (issue 22).

Starts the embedded platform (``python -m dockyard_platform``: its own NATS and Redis, the
router with its workers, the scheduler with the autoscaler at its default windows) and
deploys two stdlib WSGI endpoints on the local target ``local-eu``:

- **step load**: ``predict`` (each request sleeps 50 ms, standing for a model), replicas
  ``1..8`` at ``target_concurrency`` 4. Clients call it in a closed loop: 1 client for
  ``--low-s``, 32 for ``--high-s``, 1 again for ``--after-s``. Reported: ``scale_up_s`` (the
  step → a second replica serving), ``full_scale_s`` (→ the most replicas the phase reached,
  ``peak_replicas``; 32 clients keep a little less than 32 requests in flight at the router,
  since each spends some time outside it), the latencies of the 32-client phase
  (``ramp_p50_ms``/``ramp_p99_ms``), the replicas at the end of the last phase, and
  ``failed_requests`` over all three (anything but a 200; goal 0: no scale-down may fail a
  request);
- **cold start**: ``hello`` with ``min: 0``, ``idle_s: 1``. ``--trials`` times: wait until the
  record shows it idle (no replica) and the drain has passed (the process is gone), call it,
  time the answer (the router holds the request, asks the scheduler for a replica, forwards
  it once ready), then 5 warm calls. Reported:
  ``cold_start_p50_s``/``cold_start_p99_s`` and ``warm_p50_ms``. Goal: p50 ≤ 1 s.

Prints readable lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness

from tests.harness.archives import tar_gz
from tests.harness.fixtures import (
    Names,
    RunningPlatform,
    admin_client,
    start_platform_process,
)
from tests.harness.flows import (
    create_version,
    put_deployment,
    upload_blob,
    wait_for_version,
)

WORKING_APP = b"""\
import time


def app(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

HELLO_APP = b"""\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""

TARGET_CONCURRENCY = 4
MAX_REPLICAS = 8
HIGH_CLIENTS = 32
DRAIN_S = 2.0
"""The scheduler's DOCKYARD_SCALE_DOWN_DRAIN_S (its default)."""


def percentile(values: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def deploy(
    api: httpx.AsyncClient, names: Names, endpoint: str, app: bytes, replicas: dict[str, Any]
) -> None:
    code = await upload_blob(api, names, tar_gz({"app.py": app}))
    created = await create_version(
        api,
        names,
        {
            "name": "v1",
            "code": {"blob": code},
            "endpoints": [{"name": endpoint, "wsgi": "app:app"}],
            "replicas": {endpoint: replicas},
        },
    )
    if created.status_code != 201:
        raise SystemExit(f"could not submit {endpoint}: {created.status_code} {created.text}")
    await wait_for_version(api, names, "v1", "ready", within_s=120)


async def endpoint_state(api: httpx.AsyncClient, names: Names) -> dict[str, Any]:
    path = f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}"
    version = (await api.get(f"{path}/versions/v1")).json()
    [state] = version["endpoint_states"]
    return state  # type: ignore[no-any-return]


class ClosedLoop:
    """Clients calling one URL in a loop, each on its own keep-alive connection."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session, self._url = session, url
        self.latencies_ms: list[float] = []
        self.failed = 0
        self.answered = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stops: list[asyncio.Event] = []

    def resize(self, clients: int) -> None:
        """Add clients, or stop the ones beyond ``clients``."""
        while len(self._tasks) < clients:
            stop = asyncio.Event()
            self._stops.append(stop)
            self._tasks.append(asyncio.create_task(self._client(stop)))
        while len(self._tasks) > clients:
            self._stops.pop().set()
            self._tasks.pop()

    async def _client(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with self._session.get(self._url) as answer:
                    await answer.read()
                    ok = answer.status == 200
            except aiohttp.ClientError:
                ok = False
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.answered += ok
            self.failed += not ok

    async def close(self) -> None:
        self.resize(0)
        await asyncio.sleep(0.5)  # the last calls end (each takes ~50 ms)


async def step_load(
    platform: RunningPlatform, names: Names, args: argparse.Namespace
) -> dict[str, Any]:
    async with admin_client(platform) as api:
        await put_deployment(api, names, ["local-eu"])
        scaled = {"min": 1, "max": MAX_REPLICAS, "target_concurrency": TARGET_CONCURRENCY}
        await deploy(api, names, "predict", WORKING_APP, scaled)
        url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            load = ClosedLoop(session, f"{url}/v1/predict/")
            load.resize(1)
            await asyncio.sleep(args.low_s)
            print(f"step load: 1 client {args.low_s:g} s, then {HIGH_CLIENTS}", flush=True)
            before = len(load.latencies_ms)
            stepped = time.monotonic()
            load.resize(HIGH_CLIENTS)
            reached: dict[int, float] = {}  # replicas serving → when first seen
            while time.monotonic() - stepped < args.high_s:
                serving = len((await endpoint_state(api, names))["upstreams"])
                reached.setdefault(serving, time.monotonic() - stepped)
                await asyncio.sleep(0.1)
            peak = max(reached)
            scale_up_s = min((t for n, t in reached.items() if n >= 2), default=None)
            ramp = load.latencies_ms[before:]
            print(
                f"  {HIGH_CLIENTS} clients for {args.high_s:g} s: peak {peak} replicas", flush=True
            )
            load.resize(1)
            await asyncio.sleep(args.after_s)
            after = await endpoint_state(api, names)
            await load.close()
    return {
        "scale_up_s": None if scale_up_s is None else round(scale_up_s, 2),
        "full_scale_s": round(reached[peak], 2),
        "peak_replicas": peak,
        "replicas_after": len(after["upstreams"]),
        "ramp_p50_ms": _rounded(percentile(ramp, 0.5), 1),
        "ramp_p99_ms": _rounded(percentile(ramp, 0.99), 1),
        "ramp_requests": len(ramp),
        "requests": load.answered + load.failed,
        "failed_requests": load.failed,
    }


async def cold_starts(
    platform: RunningPlatform, names: Names, args: argparse.Namespace
) -> dict[str, Any]:
    cold: list[float] = []
    warm: list[float] = []
    failed = 0
    async with admin_client(platform) as api:
        await put_deployment(api, names, ["local-eu"])
        await deploy(api, names, "hello", HELLO_APP, {"min": 0, "max": 1, "idle_s": 1})
        url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}"
        async with httpx.AsyncClient(timeout=60) as client:
            for trial in range(args.trials):
                deadline = time.monotonic() + 60
                while (await endpoint_state(api, names))["state"] != "idle":
                    if time.monotonic() > deadline:
                        raise SystemExit(f"trial {trial}: the endpoint never went idle")
                    await asyncio.sleep(0.05)
                # Past the scale-down drain (2 s): the last replica is stopped, not merely
                # out of the route, so the call below waits for a process start.
                await asyncio.sleep(DRAIN_S + 0.5)
                started = time.perf_counter()
                answer = await client.get(f"{url}/v1/hello/")
                cold.append(time.perf_counter() - started)
                failed += answer.status_code != 200
                for _ in range(5):
                    started = time.perf_counter()
                    answer = await client.get(f"{url}/v1/hello/")
                    warm.append((time.perf_counter() - started) * 1000)
                    failed += answer.status_code != 200
                print(f"  trial {trial + 1}: cold {cold[-1]:.3f} s", flush=True)
    return {
        "cold_start_p50_s": _rounded(percentile(cold, 0.5), 3),
        "cold_start_p99_s": _rounded(percentile(cold, 0.99), 3),
        "cold_start_max_s": round(max(cold), 3),
        "warm_p50_ms": round(statistics.median(warm), 2),
        "cold_failed_requests": failed,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-autoscale-") as data:
        print("starting the embedded platform ...", flush=True)
        platform = await asyncio.to_thread(start_platform_process, Path(data), {}, 120.0)
        try:
            figures = {}
            if args.trials:
                print(f"cold start: {args.trials} trials", flush=True)
                figures.update(await cold_starts(platform, Names("bench", "scale", "zero"), args))
            figures.update(await step_load(platform, Names("bench", "scale", "step"), args))
        finally:
            platform.stop(60)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low-s", type=float, default=10.0, help="1 client, before the step")
    parser.add_argument("--high-s", type=float, default=30.0, help="32 clients")
    parser.add_argument(
        "--after-s", type=float, default=75.0, help="1 client again (> the 60 s stable window)"
    )
    parser.add_argument("--trials", type=int, default=20, help="starts from zero")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    print(
        f"scale up: a 2nd replica after {figures['scale_up_s']} s, "
        f"{figures['peak_replicas']} (the peak) after {figures['full_scale_s']} s; "
        f"{figures['replicas_after']} at the end"
    )
    print(
        f"ramp: p50 {figures['ramp_p50_ms']} ms, p99 {figures['ramp_p99_ms']} ms over "
        f"{figures['ramp_requests']} requests; failed {figures['failed_requests']} of "
        f"{figures['requests']} (goal 0)"
    )
    if args.trials:
        print(
            f"cold start: p50 {figures['cold_start_p50_s']} s, p99 "
            f"{figures['cold_start_p99_s']} s (goal p50 <= 1 s); warm p50 "
            f"{figures['warm_p50_ms']} ms"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
