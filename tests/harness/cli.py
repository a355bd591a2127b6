"""The ``dockyard`` command as a user types it: a subprocess with a config directory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.fixtures import RunningPlatform

__all__ = ["Cli", "logged_in_cli", "train_example"]


@dataclass
class Cli:
    """Runs ``dockyard`` with a config directory of its own."""

    env: dict[str, str]
    cwd: Path | None = None

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run one command; fail showing its output unless it exits ``expect``."""
        done = subprocess.run(
            [sys.executable, "-m", "dockyard_cli", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == expect, (
            f"dockyard {' '.join(args)} exited {done.returncode}, not {expect}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done

    def json(self, *args: str) -> Any:
        """Run a command with ``--output json`` and decode its answer."""
        return json.loads(self.run(*args, "--output", "json").stdout)


def logged_in_cli(
    platform: RunningPlatform, home: Path, owner: str, deployment: str, cwd: Path | None = None
) -> Cli:
    """``dockyard login`` (project ``OWNER/demo``, the given deployment) and ``owners create``,
    as the README's first step does; the login file is checked to be the user's only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["XDG_CONFIG_HOME"] = str(home)
    cli = Cli(env, cwd)
    cli.run(
        "login",
        "--url", platform.api_url,
        "--token", platform.admin_token,
        "--router-url", platform.router_url,
        "--project", f"{owner}/demo",
        "--deployment", deployment,
    )  # fmt: skip
    stored = home / "dockyard" / "login.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    cli.run("owners", "create", owner)
    return cli


def train_example(folder: Path, *extra: str) -> None:
    """Run an example's ``train.py`` in its folder (writes ``model.json`` there)."""
    subprocess.run([sys.executable, "train.py", *extra], cwd=folder, check=True, timeout=120)
