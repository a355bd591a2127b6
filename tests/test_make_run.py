"""``make run``'s launcher: starts its own NATS and Redis, serves, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from dockyard_cli.servers import free_port
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


REPO = Path(__file__).resolve().parents[1]
DEVELOPMENT_TOOLS = ("pytest", "mypy", "ruff", "schemathesis", "kubernetes_validate")


def uv_for_make() -> str | None:
    """The uv the Makefile would use: on PATH, or the one `make uv` put in .tools/."""
    found = shutil.which("uv") or REPO / ".tools" / "bin" / "uv"
    return str(found) if Path(found).exists() else None


def fresh_clone(into: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, nothing ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def disk_bytes(root: Path) -> int:
    """Bytes allocated to the files under ``root``, each hard-linked inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


@pytest.mark.timeout(400)
def test_make_run_in_a_fresh_clone_installs_only_what_running_needs_and_says_little(
    tmp_path: Path,
) -> None:
    uv = uv_for_make()
    if uv is None:
        pytest.skip("no uv on PATH nor in .tools/ (make uv installs it): make run needs one")
    clone = fresh_clone(tmp_path / "dockyard")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DOCKYARD_", "UV_PROJECT", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env['PATH']}"
    env["DOCKYARD_API_PORT"] = str(free_port())
    env["DOCKYARD_ROUTER_PORT"] = str(free_port())
    make = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the whole group, as in a terminal
    )
    output: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert make.stdout is not None
        for line in make.stdout:
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        assert running.wait(300), f"make run did not start the platform:\n{''.join(output)}"
        took = time.monotonic() - started
        before = output[: next(i for i, line in enumerate(output) if "Dockyard is running" in line)]
        venv = clone / ".venv"
        [site] = list(venv.glob("lib/python*/site-packages"))
        print(
            f"\nmake run in a fresh clone: the platform ran {took:.1f} s after the start; "
            f".venv {disk_bytes(venv) / 1024**2:.0f} MiB on disk; "
            f"{len(before)} lines before the banner:\n{''.join(before)}"
        )
        installed = [tool for tool in DEVELOPMENT_TOOLS if (site / tool).exists()]
        assert installed == [], f"make run installed development tools: {installed}"
        assert (site / "dockyard_cli").exists() or any(site.glob("*dockyard_cli*"))
        assert (site / "sklearn").exists(), "the README's training needs scikit-learn"
        package_lines = [line for line in before if re.match(r"\s*[+-] [\w.-]+==", line)]
        assert package_lines == [], f"make run listed packages:\n{''.join(package_lines)}"
        assert len(before) <= 6, f"make run said too much before its banner:\n{''.join(before)}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(60)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
        reader.join(10)
    assert "Dockyard stopped." in "".join(output), "".join(output)
