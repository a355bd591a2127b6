"""``dockyard logs`` shows what the built-in WSGI runner writes: its start, a line per request
with the request id the client sent, as the requests come (``--follow``)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.cli import logged_in_cli
from tests.harness.fixtures import Names, RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

VALOHAI_YAML = """\
- endpoint:
    name: predict
    image: python:3.11-slim
    wsgi: app:app
"""
APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_logs_show_the_runner_start_and_each_request_as_it_comes(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "valohai.yaml").write_text(VALOHAI_YAML)
    (folder / "app.py").write_text(APP)
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "web")
    deployed = cli.json("deploy", str(folder), "--name", "v1", "--target", "local-eu", "--wait")
    assert deployed["status"] == "ready", deployed
    url = deployed["urls"]["v1/predict"]

    answer = httpx.get(url, headers={"X-Request-Id": "first-call"})
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "first-call"
    shown = cli.run("logs", "v1", "predict").stdout
    print(f"\n{shown}")
    assert "(no output yet)" not in shown
    assert "local-eu/0 | " in shown and "dockyard_runner: serving app:app" in shown
    [line] = [line for line in shown.splitlines() if "request_id=first-call" in line]
    assert " 200 " in line and " ms " in line and line.startswith("local-eu/0 | ")

    # --follow prints a request's line once it is answered, not when a buffer fills.
    follow = subprocess.Popen(
        [sys.executable, "-m", "dockyard_cli", "logs", "v1", "predict", "-f", "--interval", "0.2"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follow.stdout is not None
        for printed in follow.stdout:
            lines.put(printed)

    threading.Thread(target=read, daemon=True).start()
    try:
        # The first poll prints what is there already (the first call's line among it).
        deadline = time.monotonic() + 15
        seen: list[str] = []
        while not any("request_id=first-call" in s for s in seen):
            assert time.monotonic() < deadline, f"--follow printed nothing known: {seen}"
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        sent = time.monotonic()
        assert httpx.get(url, headers={"X-Request-Id": "followed-call"}).status_code == 200
        while not any("request_id=followed-call" in s for s in seen):
            assert time.monotonic() < deadline, f"--follow did not print the request: {seen}"
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        print(f"--follow printed the request {time.monotonic() - sent:.2f} s after it was sent")
    finally:
        follow.terminate()
        follow.wait(10)
