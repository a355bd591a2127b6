"""What the benchmarks share: the embedded platform, started as ``make run`` starts it.

Import it as ``bench.common`` (run from the repository's root, ``python -m bench.x``) or as
``common`` (``python bench/x.py``: bench/ is then on ``sys.path``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common.runtime.processes import stop_with_parent
from dockyard_platform.servers import free_port

__all__ = ["ROUTER_WORKERS", "STARTED_LINE", "Platform", "percentile"]

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
