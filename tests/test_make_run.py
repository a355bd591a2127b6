"""``make run``'s launcher: starts its own NATS and Redis, serves, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.fixtures import Names, start_platform_process
from tests.harness.flows import (
    deploy_ready,
    put_deployment,
)
from tests.harness.procs import alive, descendants

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_the_platform_serves_and_ctrl_c_stops_every_process_it_started(
    tmp_path: Path, names: Names
) -> None:
    platform = start_platform_process(tmp_path / "data", {})
    try:
        assert any("Admin token" in line for line in platform.output)
        # The login line it prints works pasted as it stands.
        pasted = [line for line in platform.output if line.strip().startswith("dockyard login")]
        assert len(pasted) == 1, "".join(platform.output)
        login = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dockyard_cli",
            *shlex.split(pasted[0])[1:],
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        said, _ = await asyncio.wait_for(login.communicate(), 60)
        assert login.returncode == 0, said.decode()
        assert (tmp_path / "config" / "dockyard" / "login.json").exists()
        async with httpx.AsyncClient(
            base_url=platform.api_url,
            headers={"Authorization": f"Bearer {platform.admin_token}"},
            timeout=10,
        ) as api:
            await put_deployment(api, names, ["local-eu", "local-us"])
            await deploy_ready(api, names, "v1")
        started = descendants(platform.process.pid)
        # nats-server, redis-server, four services and two endpoint replicas at least.
        assert len(started) >= 8, started
    finally:
        code = platform.stop()
    assert code == 0, "".join(platform.output)
    assert [pid for pid in started if alive(pid)] == []
    assert "Dockyard stopped." in "".join(platform.output)


def test_a_burst_of_signals_still_stops_the_platform(tmp_path: Path) -> None:
    # A signal handler that takes a lock deadlocks when the next signal lands while it
    # holds it: `dockyard up` hung like that, every process left running.
    platform = start_platform_process(tmp_path / "data", {})
    started = descendants(platform.process.pid)
    try:
        # Signals arriving all along for a second, as from an impatient supervisor: some
        # land while the launcher handles the one before.
        until = time.monotonic() + 1
        while time.monotonic() < until and not stopped(platform.output):
            platform.process.send_signal(signal.SIGTERM)
            time.sleep(0.0005)
        platform.process.wait(60)
    finally:
        if platform.process.poll() is None:
            platform.process.kill()
            platform.process.wait()
            for pid in descendants(platform.process.pid) | started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    # Its exit code is not asserted: a signal landing after it finished, while the
    # interpreter shuts down, ends it with that signal's default action.
    assert stopped(platform.output), "".join(platform.output)
    assert [pid for pid in started if alive(pid)] == []


def stopped(output: list[str]) -> bool:
    return "Dockyard stopped.\n" in output
