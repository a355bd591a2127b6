"""Switching traffic: Dockyard's alias switch against rewrite-and-reload in nginx and HAProxy.

An nginx or HAProxy user moves production from one model server to another by rewriting
the upstream in the configuration and reloading. Dockyard moves an alias with one API call.
One embedded platform (``make run``'s) serves versions ``v1`` and ``v2`` of a small WSGI
app on ``local-eu``; nginx and HAProxy (two workers each, Debian's packages) proxy to the
very same replicas (their Unix sockets, read from the state of record). For each subject,
while ``wrk`` keeps 32 connections busy on the production URL, ``--switches`` switches
alternate v1 and v2: each is timed from just before the API call (or the configuration
write and the reload signal) until a request on a new connection is answered by the new
version (polled every millisecond). Figures: switch p50/p99, and the requests wrk saw fail
(non-2xx or socket errors) over the whole run.

Run: ``.venv/bin/python bench/switching.py``; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests.harness
from dockyard_platform.servers import free_port
from tests.harness.archives import tar_gz

try:
    from bench.common import (
        Platform,
        WrkRun,
        haproxy_config,
        nginx_proxy_config,
        percentile,
        run_wrk,
    )
except ModuleNotFoundError:  # run as ``python bench/switching.py``: bench/ is on sys.path
    from common import (  # type: ignore[no-redef,import-not-found]
        Platform,
        WrkRun,
        haproxy_config,
        nginx_proxy_config,
        percentile,
        run_wrk,
    )

DEPLOYMENT = "/v1/projects/bench/switching/deployments/web"
ROUTED = "/bench/switching/web/production/predict/"


def app(version: str) -> bytes:
    return (
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [b'{version}']\n"
    ).encode()


def set_up(api: httpx.Client) -> dict[str, str]:
    """Versions v1 and v2 ready, production on v1; each version's replica socket."""
    api.post("/v1/owners", json={"name": "bench"})
    api.put("/v1/projects/bench/switching", json={})
    api.put(DEPLOYMENT, json={"targets": ["local-eu"]})
    sockets = {}
    for version in ("v1", "v2"):
        code = tar_gz({"app.py": app(version)})
        digest = "sha256:" + hashlib.sha256(code).hexdigest()
        api.put(f"/v1/projects/bench/switching/blobs/{digest}", content=code).raise_for_status()
        body = {"name": version, "code": {"blob": digest}}
        body["endpoints"] = [{"name": "predict", "wsgi": "app:app"}]
        api.post(f"{DEPLOYMENT}/versions", json=body).raise_for_status()
    for version in ("v1", "v2"):
        deadline = time.monotonic() + 120
        while (record := api.get(f"{DEPLOYMENT}/versions/{version}").json())["status"] != "ready":
            if time.monotonic() > deadline or record["status"] == "failed":
                raise RuntimeError(f"{version}: {record['status']} {record.get('error')}")
            time.sleep(0.1)
        upstream = record["endpoint_states"][0]["upstreams"][0]
        sockets[version] = upstream.removeprefix("unix:")
    api.put(f"{DEPLOYMENT}/aliases/production", json={"version": "v1"}).raise_for_status()
    return sockets


def answer_of(url: str) -> bytes:
    """The body of a GET of ``url`` on a new connection (raw: an HTTP client library's own
    start-up would dominate a millisecond poll)."""
    address, _, path = url.removeprefix("http://").partition("/")
    host, _, port = address.partition(":")
    with socket.create_connection((host, int(port)), timeout=2) as connection:
        connection.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return body if head.startswith(b"HTTP/1.1 200") else b""


def until_served(url: str, version: str, timeout_s: float = 10.0) -> float:
    """When a request on a new connection is first answered by ``version``."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            if answer_of(url) == version.encode():
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{url} never served {version}")


def switches(url: str, switch: Callable[[str], None], count: int) -> tuple[list[float], WrkRun]:
    """``count`` switches under a wrk load on ``url``: their times (ms) and the load's run."""
    loaded: list[WrkRun] = []
    load = threading.Thread(target=lambda: loaded.append(run_wrk(url, 32, count * 0.5 + 2)))
    load.start()
    time.sleep(0.5)
    times = []
    for index in range(count):
        version = "v2" if index % 2 == 0 else "v1"
        started = time.perf_counter()
        switch(version)
        times.append((until_served(url, version) - started) * 1000)
        time.sleep(0.2)
    load.join()
    return times, loaded[0]


class Reloaded:
    """nginx or HAProxy serving a config that names one replica, switched by rewrite+reload."""

    def __init__(self, kind: str, work: Path, sockets: dict[str, str]) -> None:
        self.kind, self.work, self.sockets = kind, work, sockets
        self.port = free_port()
        self.conf = work / f"{kind}.conf"
        self._write("v1")
        if kind == "nginx":
            command = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(self.conf)]
            command += ["-g", "daemon off;"]
        else:  # master-worker mode: SIGUSR2 reloads, old workers finish their connections
            command = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-W", "-f", str(self.conf)]
        log = (work / f"{kind}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        until_served(self.url, "v1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _write(self, version: str) -> None:
        socket_path = self.sockets[version]
        if self.kind == "nginx":
            text = nginx_proxy_config(self.work, "nginx", self.port, f"unix:{socket_path}")
        else:
            text = haproxy_config(self.port, socket_path)
        self.conf.write_text(text)

    def switch(self, version: str) -> None:
        self._write(version)
        self.process.send_signal(signal.SIGHUP if self.kind == "nginx" else signal.SIGUSR2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def summary(times: list[float], load: WrkRun) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(times, 50) or 0, 2),
        "p99_ms": round(percentile(times, 99) or 0, 2),
        "failed_requests": load.errors,
        "requests": round(load.rps, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-switching-"))
    platform = Platform(work)
    platform.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        headers = {"Authorization": f"Bearer {platform.admin_token}"}
        with httpx.Client(base_url=platform.api_url, headers=headers, timeout=30) as api:
            sockets = set_up(api)

            def switch_alias(version: str) -> None:
                api.put(f"{DEPLOYMENT}/aliases/production", json={"version": version})

            url = f"{platform.router_url}{ROUTED}"
            results["dockyard"] = summary(*switches(url, switch_alias, args.switches))
            for kind in ("nginx", "haproxy"):
                peer = Reloaded(kind, work, sockets)
                try:
                    results[kind] = summary(*switches(peer.url, peer.switch, args.switches))
                finally:
                    peer.stop()
    finally:
        platform.stop()
        shutil.rmtree(work, ignore_errors=True)
    for subject, figures in results.items():
        print(f"{subject:<9} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    rows = [
        {
            "name": f"switch {figure}",
            "subject": results["dockyard"][figure],
            "reference": None,
            "ratio": None,
            "peers": {k: results[k][figure] for k in ("nginx", "haproxy")},
            "raw": {k: v[figure] for k, v in results.items()},
        }
        for figure in ("p50_ms", "p99_ms", "failed_requests")
    ]
    print(json.dumps({"benchmark": "switching", "machine_cpus": os.cpu_count(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
