"""The README's five-minute walk-through, run as the README writes it.

The shell block under "Five minutes" is run by bash, unchanged but for what a reader
substitutes (the API and router URLs ``make run`` printed, the admin token) and a fresh
owner name, from a copy of the repository's examples, with the project's venv first on
PATH as after ``source .venv/bin/activate``. A README edit that breaks a newcomer's path
breaks this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.fixtures import Names, RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]


def walkthrough_block() -> str:
    """The first ``sh`` block after the README's "Five minutes" heading."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Five minutes") :]
    found = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert found, "the README's walk-through has no sh block"
    return found.group(1)


def test_the_readme_walkthrough_runs_as_written_to_a_prediction_through_production(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    block = walkthrough_block()
    for placeholder in ("http://127.0.0.1:8080", "http://127.0.0.1:8081", "<the admin token>"):
        assert placeholder in block, f"the walk-through no longer shows {placeholder}"
    script = (
        block.replace("http://127.0.0.1:8080", platform.api_url)
        .replace("http://127.0.0.1:8081", platform.router_url)
        .replace("<the admin token>", platform.admin_token)
        .replace("acme", names.owner)
    )
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    said = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"the README's walk-through failed:\n{said}"
    # Step 5: the prediction through production, and the answer the README shows.
    assert "(alias production)" in done.stderr, said
    assert '{"digit": 0, "confidence": 1.0}' in done.stdout, said
    # Step 7: the history, newest first, starts with the rollback.
    lines = done.stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("AT "))
    assert lines[header + 1].split()[1] == "rollback", said
