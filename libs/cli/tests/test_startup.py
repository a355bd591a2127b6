"""``dockyard --help`` starts without the modules only commands need (httpx, pydantic, the
platform's own packages, rich's help rendering). The time it takes is printed, not asserted
(bench/cli_startup.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HEAVY = (
    "httpx",
    "pydantic",
    "nats",
    "redis",
    "dockyard_common",
    "dockyard_platform",
    "rich.markdown",
    "pygments",
)

PROBE = """
import json, sys
from dockyard_cli.__main__ import app
try:
    app(["--help"], prog_name="dockyard")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_help_imports_nothing_heavy() -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    took = time.perf_counter() - started
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"dockyard --help imported {heavy}"
    assert "Usage: dockyard" in done.stdout and "start" in done.stdout
    print(f"\ndockyard --help as a process: {took:.3f} s, {len(loaded)} modules")


def test_a_command_that_calls_the_api_leaves_httpx_s_own_command_line_out() -> None:
    # httpx imports its command line (click, rich, pygments) unless told not to.
    environ = {
        **os.environ,
        "DOCKYARD_URL": "http://127.0.0.1:9",  # nothing listens: the call fails at once
        "DOCKYARD_TOKEN": "t",
        "DOCKYARD_PROJECT": "a/b",
        "DOCKYARD_DEPLOYMENT": "c",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dockyard_cli", "versions"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    took = time.perf_counter() - started
    assert done.returncode == 1 and "cannot reach the API" in done.stderr, done.stderr[-500:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "httpx" in imported
    heavy = sorted(imported & {"click", "pygments", "rich.console"})
    assert heavy == [], f"httpx's command line was imported, and with it {heavy}"
    print(f"\ndockyard versions (API unreachable) as a process: {took:.3f} s")
