"""``dockyard --help`` starts without the modules only commands need (httpx, pydantic, the
platform's own packages, rich's help rendering). The time it takes is printed, not asserted
(bench/cli_startup.py measures it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

HEAVY = ("httpx", "pydantic", "nats", "redis", "dockyard_common", "rich.markdown", "pygments")

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
