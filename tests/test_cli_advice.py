"""What ``dockyard`` says when something is refused, against a real platform: the command or
flag to use, never the API's HTTP terms; exit 1 for a refusal, 2 for a usage error only."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.harness.cli import Cli, logged_in_cli
from tests.harness.fixtures import Names, RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

API_SPEAK = re.compile(r"POST /|PUT /|force=true|pass force|'endpoints' inline")

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


def code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "valohai.yaml").write_text(VALOHAI_YAML)
    (folder / "app.py").write_text(APP)
    return folder


def said(done: object) -> str:
    stderr = str(getattr(done, "stderr", ""))
    assert not API_SPEAK.search(stderr), f"the CLI spoke API: {stderr}"
    return stderr


def project_exists(platform: RunningPlatform, owner: str) -> bool:
    answer = httpx.get(
        f"{platform.api_url}/v1/projects/{owner}/demo",
        headers={"Authorization": f"Bearer {platform.admin_token}"},
    )
    return answer.status_code == 200


def test_a_refused_saved_token_says_how_to_log_in_again(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    # As after `make run` started again with a new admin token: the saved one is refused.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    cli = Cli({**env, "XDG_CONFIG_HOME": str(tmp_path / "config")})
    cli.run(
        "login", "--url", platform.api_url, "--router-url", platform.router_url,
        "--token", "an-old-token", "--project", f"{names.owner}/demo", "--deployment", "web",
        "--no-check",
    )  # fmt: skip
    refused = said(cli.run("versions", expect=1))
    print(f"\n{refused}")
    assert "refused the token saved by dockyard login" in refused
    assert str(tmp_path / "config" / "dockyard" / "login.json") in refused
    assert (
        f"dockyard login --url {platform.api_url} --router-url {platform.router_url} "
        f"--project {names.owner}/demo --deployment web "
        '--token "$(cat .dockyard/admin-token)"'
    ) in refused
    # Pasted with the current token, it works again (the file stands for admin-token).
    cli.run(
        "login", "--url", platform.api_url, "--router-url", platform.router_url,
        "--token", platform.admin_token, "--project", f"{names.owner}/demo",
        "--deployment", "web",
    )  # fmt: skip
    cli.run("owners", "create", names.owner)
    # A token given in the environment is named as such.
    from_env = Cli({**cli.env, "DOCKYARD_TOKEN": "stale"})
    assert "refused the token in DOCKYARD_TOKEN" in said(from_env.run("versions", expect=1))


def test_refusals_name_commands_and_exit_1(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    folder = code_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    cli = Cli({**env, "XDG_CONFIG_HOME": str(tmp_path / "config")})
    cli.run(
        "login", "--url", platform.api_url, "--router-url", platform.router_url,
        "--token", platform.admin_token, "--project", f"{names.owner}/demo",
        "--deployment", "web",
    )  # fmt: skip

    # No owner yet: the deploy says which command makes it, and uploaded nothing.
    missing_owner = said(cli.run("deploy", str(folder), "--name", "v1", expect=1))
    assert f"dockyard owners create {names.owner}" in missing_owner, missing_owner
    cli.run("owners", "create", names.owner)

    # A project that does not exist yet, read: deploy creates it.
    assert "dockyard deploy creates it" in said(cli.run("versions", expect=1))

    # A folder without endpoint definitions is refused before anything is created or sent.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "app.py").write_text(APP)
    usage = said(cli.run("deploy", str(empty), expect=2))
    assert "no valohai.yaml" in usage, usage
    assert not project_exists(platform, names.owner), "deploy created the project anyway"

    deployed = cli.json("deploy", str(folder), "--name", "v1", "--target", "local-eu", "--wait")
    assert deployed["status"] == "ready", deployed
    # A canary needs the alias to point somewhere: a refusal for the state, exit 1, not 2.
    canary = said(cli.run("alias", "set", "production", "v1", "--weight", "10", expect=1))
    assert "point at a version first" in canary, canary
    switched = cli.run("alias", "set", "production", "v1").stdout
    assert re.search(r"answered \d+\.\d ms after it was sent, once \d+ router", switched), switched

    stop = said(cli.run("stop", "v1", expect=1))
    assert "dockyard alias set production VERSION" in stop and "dockyard stop v1 --force" in stop
    again = said(cli.run("deploy", str(folder), "--name", "v1", expect=1))
    assert "give another --name" in again, again
    unknown = said(cli.run("status", "v9", expect=1))
    assert "dockyard versions lists them" in unknown, unknown


def test_usage_errors_still_exit_2(platform: RunningPlatform, tmp_path: Path, names: Names) -> None:
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "web")
    cli.run("alias", "set", "production", expect=2)  # VERSION missing
    cli.run("predict", "production", expect=2)  # not ALIAS/ENDPOINT
