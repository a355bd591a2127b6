"""How long the `dockyard` command takes to start: `dockyard --help` and a usage error.

    .venv/bin/python bench/cli_startup.py       # ~10 s; --runs N

Each run is a whole process, as a person types it: the interpreter's start, the imports and
the answer. Reports the median and spread of the wall time, and the imports that took
longest (``python -X importtime``), since those are what a faster start removes. Measured in
the workspace's .venv, and (with uv at hand) in a virtualenv holding the CLI alone, as the
user of a platform running elsewhere installs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests.harness

from tests.harness.installs import install_package_alone, uv_for_make

DOCKYARD = str(Path(sys.executable).with_name("dockyard"))
COMMANDS = {
    "dockyard --help": ([DOCKYARD, "--help"], "goal < 0.3 s"),
    # A command's options go through typer's pydantic adapters: pydantic is imported.
    "dockyard alias set --help": ([DOCKYARD, "alias", "set", "--help"], ""),
}


def wall_seconds(command: list[str], runs: int) -> list[float]:
    """Wall time of ``runs`` runs of ``command`` (after one warm-up run)."""
    subprocess.run(command, capture_output=True, check=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return times


def slowest_imports(count: int) -> list[tuple[str, float]]:
    """The top-level modules whose import (with what they import) took longest, in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dockyard_cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        # A top-level import is indented by one space; what it imported, by more.
        if cumulative.strip().isdigit() and not name.startswith("  "):
            found.append((name.strip(), int(cumulative) / 1000))
    return sorted(found, key=lambda item: -item[1])[:count]


def report(label: str, times: list[float], goal: str) -> None:
    print(
        f"{label:<40} median {statistics.median(times):.3f} s  "
        f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)   {goal}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    figures = {}
    for label, (command, goal) in COMMANDS.items():
        times = wall_seconds(command, args.runs)
        figures[label] = statistics.median(times)
        report(label, times, goal)
    uv = uv_for_make()
    if uv is None:
        print("the CLI alone: not measured (no uv on PATH nor in .tools/)")
    else:
        with tempfile.TemporaryDirectory(prefix="dockyard-cli-alone-") as scratch:
            venv = Path(scratch) / "venv"
            install_package_alone(uv, "dockyard-cli", venv)
            label = "dockyard --help (the CLI alone)"
            times = wall_seconds([str(venv / "bin" / "dockyard"), "--help"], args.runs)
            figures[label] = statistics.median(times)
            report(label, times, "goal < 0.3 s")
    print("slowest top-level imports of dockyard --help (cumulative ms):")
    for name, ms in slowest_imports(8):
        print(f"  {name:<36} {ms:7.1f}")
    print(json.dumps({"bench": "cli_startup", "median_s": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
