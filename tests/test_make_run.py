"""``make run``'s launcher: starts its own NATS and Redis, serves, and leaves nothing behind;
says it is ready only when it is, refuses ports another holds, keeps its admin token, and
stops on a crash loop saying why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from dockyard_platform.servers import free_port
from tests.faults.processes import service_pid
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import (
    deploy_ready,
    put_deployment,
)
from tests.harness.installs import REPO, uv_for_make
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


def test_a_script_waiting_on_platform_readiness_then_finds_the_targets_and_the_router(
    tmp_path: Path,
) -> None:
    # /readyz answered 200 seconds before the targets were registered and the router
    # listened: a script waiting on it found no targets.
    api_port, router_port = free_port(), free_port()
    token = secrets.token_urlsafe(16)
    seen: dict[str, object] = {}
    done = threading.Event()

    def script() -> None:
        """Wait for /readyz/platform like a script, then use the platform at once."""
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=2) as api:
            while not done.is_set():
                try:
                    ready = api.get("/readyz/platform")
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
                if ready.status_code == 200:
                    targets = api.get("/v1/targets", headers={"Authorization": f"Bearer {token}"})
                    router = httpx.get(f"http://127.0.0.1:{router_port}/healthz", timeout=2)
                    seen.update(
                        body=ready.json(), targets=targets.json(), router=router.status_code
                    )
                    return
                seen["waiting"] = ready.json()
                time.sleep(0.02)

    waiter = threading.Thread(target=script, daemon=True)
    waiter.start()
    try:
        platform = start_platform_process(
            tmp_path / "data", {"DOCKYARD_ADMIN_TOKEN": token}, ports=(api_port, router_port)
        )
        waiter.join(30)
        assert "body" in seen, f"/readyz/platform never answered 200; last: {seen}"
        assert {t["name"] for t in seen["targets"]["items"]} == {"local-eu", "local-us"}  # type: ignore[index]
        assert seen["router"] == 200
        body = seen["body"]
        assert isinstance(body, dict) and body["ready"] is True
        assert [part["name"] for part in body["parts"]] == ["api", "router", "targets"]
        banner = "".join(platform.output)
        assert f"Ready:   http://127.0.0.1:{api_port}/readyz/platform" in banner
    finally:
        done.set()
        waiter.join()
        if "platform" in locals():
            platform.stop()


def test_a_second_dockyard_up_on_busy_ports_names_who_holds_them_and_starts_nothing(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    api_port = int(platform.api_url.rpartition(":")[2])
    router_port = int(platform.router_url.rpartition(":")[2])
    before = httpx.get(f"{platform.api_url}/readyz/platform", timeout=5).json()
    second = subprocess.run(
        [sys.executable, "-m", "dockyard_cli", "up"],
        env={
            **os.environ,
            "DOCKYARD_API_PORT": str(api_port),
            "DOCKYARD_ROUTER_PORT": str(router_port),
            "DOCKYARD_DATA_DIR": str(tmp_path / "second"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = second.stdout + second.stderr
    assert second.returncode == 1, said
    assert f"127.0.0.1:{router_port} is already in use by" in said
    assert "dockyard_router (pid" in said, said
    assert "Dockyard is running" not in said and "Admin token" not in said
    assert not (tmp_path / "second" / "nats").exists(), "it started servers anyway"
    after = httpx.get(f"{platform.api_url}/readyz/platform", timeout=5)
    assert after.status_code == 200 and after.json()["instance_id"] == before["instance_id"]


async def test_a_restart_keeps_the_generated_admin_token_in_the_data_directory(
    tmp_path: Path,
) -> None:
    # A new token on every start broke every saved login while the data survived.
    data_dir = tmp_path / "data"
    lighter = {"DOCKYARD_WITHOUT": '["builder", "scheduler"]'}
    first = start_platform_process(data_dir, lighter, kept_token=True)
    try:
        token = first.admin_token
        kept = data_dir / "admin-token"
        assert kept.read_text().strip() == token
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert f"kept in {kept}" in "".join(first.output)
    finally:
        assert first.stop() == 0
    second = start_platform_process(data_dir, lighter, kept_token=True)
    try:
        assert second.admin_token == token
        async with admin_client(second) as api:
            assert (await api.get("/v1/targets")).status_code == 200
    finally:
        assert second.stop() == 0


def test_a_crash_loop_stops_the_platform_naming_the_service_and_its_last_lines(
    tmp_path: Path,
) -> None:
    platform = start_platform_process(
        tmp_path / "data",
        {"DOCKYARD_CRASH_LOOP_RESTARTS": "2", "DOCKYARD_WITHOUT": '["scheduler"]'},
    )
    started = descendants(platform.process.pid)
    try:
        killed: set[int] = set()
        deadline = time.monotonic() + 60
        # Killed three times: restarted twice, given up on the third.
        while len(killed) < 3 and platform.process.poll() is None:
            assert time.monotonic() < deadline, "".join(platform.output)
            pid = service_pid(platform.process.pid, "builder")
            if pid is None or pid in killed:
                time.sleep(0.02)
                continue
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        code = platform.process.wait(60)
    finally:
        if platform.process.poll() is None:
            platform.process.kill()
            platform.process.wait()
    said = "".join(platform.output)
    assert code == 1, said
    assert "builder killed by SIGKILL; it ended 3 times within 60 s" in said, said
    assert "crash loop. Its last log lines:" in said and "service.started" in said
    assert said.count("platform.service.restarted") == 2
    assert "Dockyard stopped." in said
    assert [pid for pid in started if alive(pid)] == []


DEVELOPMENT_TOOLS = ("pytest", "mypy", "ruff", "schemathesis", "kubernetes_validate")


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
        for package in ("dockyard_cli", "dockyard_platform"):
            assert (site / package).exists() or any(site.glob(f"*{package}*")), package
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
