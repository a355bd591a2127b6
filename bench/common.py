"""What the benchmarks share: the embedded platform as ``make run`` starts it, wrk, figures.

Import it as ``bench.common`` (run from the repository's root, ``python -m bench.x``) or as
``common`` (``python bench/x.py``: bench/ is then on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common.runtime.processes import stop_with_parent
from dockyard_platform.servers import free_port

__all__ = [
    "ROUTER_WORKERS",
    "STARTED_LINE",
    "Platform",
    "WrkRun",
    "haproxy_config",
    "nginx_proxy_config",
    "parse_wrk",
    "percentile",
    "run_wrk",
    "spread",
]

ROUTER_WORKERS = int(os.environ.get("DOCKYARD_ROUTER_WORKERS", "2"))
"""Router processes the platform runs (the embedded default is 2)."""
STARTED_LINE = "Press Ctrl-C to stop."
"""What the launcher prints once the platform as a whole is ready."""


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile of ``values`` (nearest rank), None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass
class Platform:
    """The embedded platform (``python -m dockyard_platform``) as ``make run`` starts it."""

    work_dir: Path
    process: subprocess.Popen[str] | None = None
    api_url: str = ""
    router_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    output: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Settings of this run (``DOCKYARD_*``) on top of this process's environment."""

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the launcher; return once it prints that it is running."""
        api_port, router_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.router_url = f"http://127.0.0.1:{router_port}"
        env = dict(
            os.environ,
            DOCKYARD_API_PORT=str(api_port),
            DOCKYARD_ROUTER_PORT=str(router_port),
            DOCKYARD_ADMIN_TOKEN=self.admin_token,
            DOCKYARD_DATA_DIR=str(self.work_dir / "data"),
            DOCKYARD_ROUTER_WORKERS=str(ROUTER_WORKERS),
            **self.env,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dockyard_platform"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            # Stopped with this process, however it ends: a killed bench left a whole
            # platform running. (Start it from the main thread: the signal follows the
            # thread that started it.)
            preexec_fn=stop_with_parent,
        )
        started = threading.Event()

        def read_output() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                if line.startswith(STARTED_LINE):
                    started.set()

        threading.Thread(target=read_output, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not started.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the platform did not start within {timeout_s:.0f} s (exit code "
                    f"{self.process.poll()}); it printed:\n{self.tail()}"
                )

    def tail(self, chars: int = 3000) -> str:
        """The end of what the launcher printed."""
        return "".join(self.output)[-chars:]

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ctrl-C, as a person would (SIGKILL if it does not stop); safe to call twice."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- wrk, the load generator (Debian's package) ---------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass(frozen=True)
class WrkRun:
    """One wrk run: requests/s, latency percentiles (ms), bytes/s, errors."""

    rps: float
    p50_ms: float
    p99_ms: float
    bytes_per_s: float
    errors: int


def run_wrk(url: str, connections: int, seconds: float) -> WrkRun:
    """``wrk`` on one thread with ``connections`` keep-alive connections for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; make bench does it)")
    done = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> WrkRun:
    """The figures of wrk's ``--latency`` report."""
    percentiles: dict[str, float] = {}
    rps = bytes_per_s = 0.0
    errors = 0
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("50%", "99%"):
            value = re.fullmatch(r"([\d.]+)(us|ms|s|m)", words[1])
            if value:
                percentiles[words[0]] = float(value[1]) * _UNITS[value[2]]
        elif line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif line.startswith("Transfer/sec:"):
            amount = re.fullmatch(r"([\d.]+)(B|KB|MB|GB)", words[1])
            bytes_per_s = float(amount[1]) * _BYTES[amount[2]] if amount else 0.0
        elif "Non-2xx or 3xx responses:" in line:
            errors += int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            errors += sum(int(n) for n in re.findall(r"\d+", line))
    return WrkRun(
        rps, percentiles.get("50%", 0.0), percentiles.get("99%", 0.0), bytes_per_s, errors
    )


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- the peers: nginx and HAProxy as plain reverse proxies (Debian's packages) --------------

_NGINX = """\
{user}worker_processes 2;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream model {{ server {server}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

_HAPROXY = """\
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend front
    bind 127.0.0.1:{port}
    default_backend model
backend model
    server upstream {server}
"""


def nginx_proxy_config(work: Path, name: str, port: int, server: str) -> str:
    """nginx with two workers proxying to ``server`` (``host:port`` or ``unix:/path``) with
    kept-alive connections, as a user who knows nginx writes it."""
    # Run as root, nginx's workers would drop to nobody, who cannot reach a replica's socket.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return _NGINX.format(user=user, work=work, name=name, port=port, server=server)


def haproxy_config(port: int, server: str) -> str:
    """HAProxy with two threads proxying to ``server`` (``host:port`` or a socket's path),
    reusing its connections."""
    return _HAPROXY.format(port=port, server=server)
