"""What the endpoint runner writes: a start line, one line per request with its request id,
the traceback of a failed request, and the app's own output, each as it happens.

The runner runs as a replica does: ``python -m dockyard_runner module:callable`` with its
output going to a file, read while it is still running.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_builder.runner import RUNNER_FILES

APP = """\
def app(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("the model is broken")
    print("handled", environ["HTTP_X_REQUEST_ID"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/stream":
        return (part for part in [b"a", b"b"])
    return [environ["HTTP_X_REQUEST_ID"].encode()]
"""


@dataclass
class Runner:
    port: int
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response

    def wait_for_line(self, pattern: str, within_s: float = 5.0) -> str:
        """The first line of the log matching ``pattern``, as soon as it is written."""
        deadline = time.monotonic() + within_s
        while True:
            text = self.log.read_text()
            found = re.search(pattern, text, flags=re.MULTILINE)
            if found:
                return found.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} within {within_s} s:\n{text}")
            time.sleep(0.02)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    (tmp_path / "app.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "replica.log"
    env = {**os.environ, "PYTHONPATH": str(RUNNER_FILES), "HOST": "127.0.0.1", "PORT": str(port)}
    env.pop("PYTHONUNBUFFERED", None)  # as in a replica: the runner itself must not buffer
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard_runner", "app:app"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Runner(port, log)
    try:
        running.wait_for_line(r"listening on 127\.0\.0\.1:\d+", within_s=10)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    running.wait_for_line("dockyard_runner: stopped$")


def test_the_runner_says_it_started_and_where_it_listens(runner: Runner) -> None:
    started = runner.wait_for_line(r"^\S+Z dockyard_runner: serving app:app$")
    print(f"\nstart line: {started}")
    runner.wait_for_line(rf"dockyard_runner: listening on 127\.0\.0\.1:{runner.port}, 4 requests")


def test_every_request_is_logged_with_its_request_id_as_it_is_answered(runner: Runner) -> None:
    given = runner.get("/hello?x=1", {"X-Request-Id": "client-id-1"})
    assert given.status == 200 and given.getheader("X-Request-Id") == "client-id-1"
    line = runner.wait_for_line(r"^.* GET /hello 200 \d+\.\d ms request_id=client-id-1$")
    print(f"\naccess line: {line}")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", line)
    # The app's own print comes out at once too (stdout is not held back in a buffer).
    runner.wait_for_line("^handled client-id-1$")

    made = runner.get("/hello").getheader("X-Request-Id")
    assert made is not None and re.fullmatch(r"[0-9a-f]{32}", made)
    runner.wait_for_line(rf"GET /hello 200 \d+\.\d ms request_id={made}$")
    # A request id with spaces is not carried over: the request gets one of its own.
    odd = runner.get("/hello", {"X-Request-Id": "two words"}).getheader("X-Request-Id")
    assert odd != "two words" and odd is not None and re.fullmatch(r"[0-9a-f]{32}", odd)

    streamed = runner.get("/stream", {"X-Request-Id": "streamed-1"})
    assert streamed.getheader("X-Request-Id") == "streamed-1"
    runner.wait_for_line(r"GET /stream 200 \d+\.\d ms request_id=streamed-1$")


def test_a_failed_request_is_logged_with_its_traceback(runner: Runner) -> None:
    failed = runner.get("/fail", {"X-Request-Id": "broken-1"})
    assert failed.status == 500
    runner.wait_for_line(r"GET /fail 500 \d+\.\d ms request_id=broken-1$")
    runner.wait_for_line(r"^dockyard_runner: request broken-1 \(GET /fail\) failed:$")
    runner.wait_for_line("^RuntimeError: the model is broken$")


def test_health_probes_are_not_logged(runner: Runner) -> None:
    for _ in range(3):
        assert runner.get("/_dockyard/health").status == 200
    runner.get("/hello", {"X-Request-Id": "after-probes"})
    runner.wait_for_line("request_id=after-probes$")
    assert "/_dockyard/health" not in runner.log.read_text()
