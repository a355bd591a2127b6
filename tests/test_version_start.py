"""A stopped version is started again, never forced onto: through ``dockyard`` as a user types
it, on the embedded platform.

Deploy two versions, stop one; a switch (and a rollback) onto it is refused, forced or not,
with the command that starts it; ``dockyard start --wait`` brings it back to ready from its
image; then the switch goes through and calls through the alias answer from it.

The platform is the test's own, its scheduler's periodic full pass an hour apart: a start
must reach the scheduler as the ``version.starting`` event, not wait for a pass to find it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard_platform.servers import start_nats
from tests.harness.cli import Cli, logged_in_cli
from tests.harness.fixtures import Names, RunningPlatform, start_platform_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

VALOHAI_YAML = """\
- endpoint:
    name: predict
    image: python:3.11-slim
    wsgi: app:app
"""

# Every version runs the same code and answers with the version it is (from its prefix).
APP = """\
import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    version = os.environ["VH_DEFAULT_PREFIX"].strip("/").split("/")[3]
    return [('{"version": "%s"}' % version).encode()]
"""


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A platform of the test's own (NATS too: two platforms on one NATS would share the
    services' durable consumers) whose scheduler makes no periodic pass after its first."""
    nats = start_nats(tmp_path / "nats")
    running = start_platform_process(
        tmp_path / "platform",
        {"DOCKYARD_NATS_URL": nats.url, "DOCKYARD_FULL_PASS_EVERY_S": "3600"},
    )
    try:
        yield running
    finally:
        running.stop()
        nats.stop()


def code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "valohai.yaml").write_text(VALOHAI_YAML)
    (folder / "app.py").write_text(APP)
    return folder


def status_of(platform: RunningPlatform, names: Names, version: str) -> dict[str, Any]:
    url = f"{platform.api_url}/v1/projects/{names.owner}/demo/deployments/web/versions/{version}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {platform.admin_token}"})
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def wait_until(
    platform: RunningPlatform, names: Names, version: str, status: str, within_s: float = 30
) -> None:
    deadline = time.monotonic() + within_s
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = status_of(platform, names, version)
        if seen["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{version} did not become {status} within {within_s} s: {seen}")


def stop(cli: Cli, platform: RunningPlatform, names: Names, version: str) -> None:
    assert "stopping" in cli.run("stop", version).stdout
    wait_until(platform, names, version, "stopped")


def served_by(cli: Cli, target: str, calls: int = 5) -> dict[str, int]:
    answered = cli.json("predict", target, "--repeat", str(calls))
    assert answered["failures"] == 0, answered
    versions: dict[str, int] = answered["versions"]
    return versions


def test_a_stopped_version_is_started_again_instead_of_being_forced_onto(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    folder = code_folder(tmp_path)
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "web")
    for version in ("v1", "v2"):
        deployed = cli.json(
            "deploy", str(folder), "--name", version, "--target", "local-eu", "--wait"
        )
        assert deployed["status"] == "ready", deployed
    cli.run("alias", "set", "production", "v1")
    stop(cli, platform, names, "v2")

    # A stopped version never becomes ready by waiting, and --force would send every call
    # to a 404: both are refused, naming the command that starts it again.
    for forced in ((), ("--force",)):
        refused = cli.run("alias", "set", "production", "v2", *forced, expect=1)
        assert "409" in refused.stderr and "dockyard start v2 --wait" in refused.stderr, (
            refused.stderr
        )
        assert "force=true" not in refused.stderr and "POST /" not in refused.stderr
    # The API names its own call.
    aliases = f"{platform.api_url}/v1/projects/{names.owner}/demo/deployments/web/aliases"
    forced_api = httpx.put(
        f"{aliases}/production",
        json={"version": "v2", "force": True},
        headers={"Authorization": f"Bearer {platform.admin_token}"},
    )
    problem = forced_api.json()
    assert forced_api.status_code == 409 and problem["stopped"] == ["v2"], problem
    assert problem["type"].endswith("/version-stopped")
    assert (
        f"POST /v1/projects/{names.owner}/demo/deployments/web/versions/v2/start"
        in (problem["detail"])
    )
    assert served_by(cli, "production/predict") == {"v1": 5}, "production moved off v1"

    asked = time.monotonic()
    started = cli.json("start", "v2", "--wait", "--timeout", "60")
    assert started["status"] == "ready", started
    print(f"\ndockyard start v2 --wait: ready {time.monotonic() - asked:.1f} s after it was run")
    assert started["urls"]["v2/predict"].endswith(f"/{names.owner}/demo/web/v2/predict/")
    cli.run("alias", "set", "production", "v2")
    assert served_by(cli, "production/predict") == {"v2": 5}
    record = status_of(platform, names, "v2")
    assert record["started_at"] is not None
    assert {s["state"] for s in record["endpoint_states"]} == {"ready"}

    # A rollback onto a version stopped meanwhile is refused the same way.
    stop(cli, platform, names, "v1")
    refused = cli.run("alias", "rollback", "production", expect=1)
    assert "dockyard start v1 --wait" in refused.stderr, refused.stderr
    cli.run("start", "v1", "--wait", "--timeout", "60")
    rolled = cli.json("alias", "rollback", "production")
    assert rolled["target"]["version"] == "v1", rolled
    assert served_by(cli, "production/predict") == {"v1": 5}

    # Starting a version that runs changes nothing and says so.
    again = cli.run("start", "v1")
    assert "nothing to start" in again.stderr and "version v1: ready" in again.stdout
    # The scheduler acted on the API's announcement.
    events = [json.loads(line) for line in cli.run("events", "-o", "json").stdout.splitlines()]
    starting = [e["data"]["name"] for e in events if e["type"] == "version.starting"]
    assert starting == ["v2", "v1"], starting
