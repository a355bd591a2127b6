"""Proxying: the same upstream called directly, through Dockyard's router, nginx and HAProxy.

What a user weighs Dockyard's data plane against is the reverse proxy they would put in
front of a model server themselves. One upstream (nginx, one worker, answering ``ok`` at
``/`` and a 1 MB body at ``/big``) is reached four ways, each proxy with two workers (the
embedded router's default): **direct**; **dockyard**, a router process of the platform
following a state of record (its own NATS) that names the upstream as a ready replica;
**nginx** and **haproxy**, Debian's packages with the plain reverse-proxy configurations
written below (keep-alive to the upstream, as the router keeps). ``wrk`` (one thread, on
the same machine, so it shares the CPUs) loads each at 1, 32 and 128 connections for
``--seconds``; the rounds interleave the subjects, ``--rounds`` times; then the 1 MB answer
at 32 connections. Figures: medians over rounds, with min and max; ratios against direct.

Run: ``.venv/bin/python bench/proxies.py`` (``apt-get install wrk nginx-light haproxy``;
``make bench`` installs them). Its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests.harness
from dockyard_platform.servers import free_port, start_redis
from tests.harness.fixtures import Names
from tests.harness.router import private_record, record_version, start_router

try:
    from bench.common import WrkRun, haproxy_config, nginx_proxy_config, run_wrk, spread
except ModuleNotFoundError:  # run as ``python bench/proxies.py``: bench/ is on sys.path
    from common import (  # type: ignore[no-redef,import-not-found]
        WrkRun,
        haproxy_config,
        nginx_proxy_config,
        run_wrk,
        spread,
    )

NAMES = Names(owner="bench", project="proxies", deployment="web")
CONNECTIONS = (1, 32, 128)
BIG = 1024 * 1024

UPSTREAM_CONF = """\
worker_processes 1;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ default_type text/plain; return 200 "ok"; }}
        location = /big {{ alias {work}/big.bin; }}
    }}
}}
"""


def wait_listening(port: int, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def process(command: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        running = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_listening(port)
        yield running
    finally:
        running.terminate()
        try:
            running.wait(10)
        except subprocess.TimeoutExpired:
            running.kill()


def nginx(conf: str, work: Path, name: str, port: int) -> contextlib.AbstractContextManager[Any]:
    path = work / f"{name}.conf"
    path.write_text(conf)
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return process([binary, "-c", str(path), "-g", "daemon off;"], port, work / f"{name}.log")


async def serve_dockyard(
    work: Path, upstream: int, ready: asyncio.Event, done: asyncio.Event, out: dict[str, str]
) -> None:
    redis = start_redis(work / "redis")
    try:
        async with private_record(work / "nats") as record:
            await record_version(record.js, NAMES, "v1", [f"http://127.0.0.1:{upstream}"])
            env = {
                "DOCKYARD_NATS_URL": record.url,
                "DOCKYARD_REDIS_URL": redis.url,
                "DOCKYARD_ROUTER_WORKERS": "2",
                "DOCKYARD_LOG_LEVEL": "warning",
            }
            with start_router(env, work / "router.log") as router:
                await router.until_serving()
                out["url"] = f"{router.url}/bench/proxies/web/v1/predict"
                ready.set()
                await done.wait()
    finally:
        redis.stop()


Runs = dict[str, dict[str, list[WrkRun]]]
"""wrk runs by case (``c32``, ``big``) and subject (``direct``, ``dockyard``, ...)."""


def measure(urls: dict[str, str], rounds: int, seconds: float) -> Runs:
    runs: Runs = {}
    for _ in range(rounds):
        for connections in CONNECTIONS:
            for subject, base in urls.items():
                run = run_wrk(f"{base}/", connections, seconds)
                runs.setdefault(f"c{connections}", {}).setdefault(subject, []).append(run)
        for subject, base in urls.items():
            runs.setdefault("big", {}).setdefault(subject, []).append(
                run_wrk(f"{base}/big", 32, seconds)
            )
    return runs


def rows_of(runs: Runs) -> list[dict[str, Any]]:
    rows = []
    for case, by_subject in runs.items():
        figures = ("bytes_per_s",) if case == "big" else ("rps", "p50_ms", "p99_ms")
        for figure in figures:
            values = {s: spread([getattr(r, figure) for r in rs]) for s, rs in by_subject.items()}
            direct = values["direct"]["median"]
            peers = {s: v for s, v in values.items() if s not in ("dockyard", "direct")}
            rows.append(
                {
                    "name": f"proxy {case} {figure}",
                    "subject": values["dockyard"]["median"],
                    "reference": direct,
                    "ratio": round(values["dockyard"]["median"] / direct, 3) if direct else None,
                    "peers": {s: v["median"] for s, v in peers.items()},
                    "raw": values,
                    "errors": {s: sum(r.errors for r in rs) for s, rs in by_subject.items()},
                }
            )
    return rows


async def benchmark(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    (work / "big.bin").write_bytes(os.urandom(BIG))
    upstream, nginx_port, haproxy_port = free_port(), free_port(), free_port()
    ready, done, dockyard = asyncio.Event(), asyncio.Event(), {}
    serving = asyncio.create_task(serve_dockyard(work, upstream, ready, done, dockyard))
    try:
        with (
            nginx(UPSTREAM_CONF.format(work=work, port=upstream), work, "upstream", upstream),
            nginx(
                nginx_proxy_config(work, "nginx", nginx_port, f"127.0.0.1:{upstream}"),
                work,
                "nginx",
                nginx_port,
            ),
        ):
            (work / "haproxy.cfg").write_text(haproxy_config(haproxy_port, f"127.0.0.1:{upstream}"))
            binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
            with process(
                [binary, "-f", str(work / "haproxy.cfg")], haproxy_port, work / "haproxy.log"
            ):
                await asyncio.wait_for(ready.wait(), 60)
                urls = {
                    "direct": f"http://127.0.0.1:{upstream}",
                    "dockyard": dockyard["url"],
                    "nginx": f"http://127.0.0.1:{nginx_port}",
                    "haproxy": f"http://127.0.0.1:{haproxy_port}",
                }
                runs = await asyncio.to_thread(measure, urls, args.rounds, args.seconds)
    finally:
        done.set()
        await serving
    return rows_of(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-proxies-"))
    try:
        rows = asyncio.run(benchmark(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        peers = "  ".join(f"{k} {v:,.2f}" for k, v in row["peers"].items())
        subject, direct = row["subject"], row["reference"]
        print(f"{row['name']:<24} dockyard {subject:>12,.2f}  direct {direct:>12,.2f}", end="")
        print(f"  ratio {row['ratio']}  {peers}")
    print(json.dumps({"benchmark": "proxies", "rounds": args.rounds, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
