"""Installing the project as a user would, away from the workspace's ``.venv``: with the uv
the Makefile uses, from uv.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["REPO", "install_package_alone", "uv_for_make"]

REPO = Path(__file__).resolve().parents[2]


def uv_for_make() -> str | None:
    """The uv the Makefile would use: on PATH, or the one `make uv` put in .tools/."""
    found = shutil.which("uv") or REPO / ".tools" / "bin" / "uv"
    return str(found) if Path(found).exists() else None


def install_package_alone(uv: str, package: str, venv: Path) -> str:
    """A new virtualenv at ``venv`` holding the workspace member ``package`` (built as a
    wheel, not editable) and only its own dependencies, pinned by uv.lock; uv's output.

    From uv's cache when it holds every wheel (``make install`` fills it), else from PyPI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    command = [
        uv, "sync", "--frozen", "--package", package, "--no-dev", "--no-editable",
        "--python", sys.executable,
    ]  # fmt: skip
    for attempt in ([*command, "--offline"], command):
        done = subprocess.run(
            attempt, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode == 0:
            return done.stderr
    raise AssertionError(f"{' '.join(command)} failed:\n{done.stderr}")
