"""The README's walk-through, through the ``dockyard`` command only, against a real platform.

Every step is a subprocess of ``python -m dockyard_cli``, as a user types it: log in,
deploy the digits example, call it by version, set ``production``, deploy a second
version, send it 10% (measured over 200 calls), switch, roll back.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cli import logged_in_cli, train_example
from tests.harness.fixtures import RunningPlatform

# Some twenty CLI processes per test: on a loaded 2-core machine each costs seconds.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the WSGI digits example with its model trained (once per module)."""
    folder = tmp_path_factory.mktemp("digits") / "digits-wsgi"
    shutil.copytree(EXAMPLES / "digits-wsgi", folder)
    train_example(folder)
    yield folder


def test_walkthrough_deploy_call_canary_switch_and_roll_back(
    platform: RunningPlatform, digits: Path, tmp_path: Path, names: Any
) -> None:
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "digits")
    model = "predict.model=model.json"

    first = cli.json("deploy", str(digits), "--name", "v1", "--file", model, "--wait")
    assert first["status"] == "ready", first
    assert first["urls"]["v1/predict"].startswith(platform.router_url)

    answer = cli.json("predict", "v1/predict", "--json", f"@{digits / 'predict.json'}")
    assert answer["body"]["digit"] == 0 and answer["version"] == "v1", answer

    cli.run("alias", "set", "production", "v1")
    answer = cli.json("predict", "production/predict", "--json", f"@{digits / 'predict.json'}")
    assert (answer["version"], answer["alias"]) == ("v1", "production"), answer

    # A second model, same code: only the new model file is uploaded.
    train_example(digits, "--c", "0.05")
    second = cli.json("deploy", str(digits), "--name", "v2", "--file", model, "--wait")
    assert second["status"] == "ready", second
    assert len(second["uploaded"]) == 1, f"the unchanged code was uploaded again: {second}"

    cli.run("alias", "set", "production", "v2", "--weight", "10")
    calls = ("predict", "production/predict", "--json", f"@{digits / 'predict.json'}")
    split = cli.json(*calls, "--repeat", "200", "--as-clients", "client")
    share = split["versions"].get("v2", 0) / 200
    assert split["failures"] == 0 and set(split["versions"]) == {"v1", "v2"}, split
    assert 0.05 <= share <= 0.15, f"v2 got {share:.1%} of 200 calls, not 10% ± 5 points"

    cli.run("alias", "set", "production", "v2")
    assert cli.json(*calls, "--repeat", "20")["versions"] == {"v2": 20}

    rolled = cli.json("alias", "rollback", "production")
    assert rolled["target"]["weights"] == {"v1": 90, "v2": 10}, rolled
    history = cli.json("alias", "history", "production")
    assert [c["action"] for c in history] == ["rollback", "set", "set", "set"]

    # Stopping a version an alias uses is refused: the operation failed, exit code 1.
    refused = cli.run("stop", "v1", expect=1)
    assert "409" in refused.stderr and "production" in refused.stderr

    listed = cli.json("versions")
    assert {(v["name"], v["status"]) for v in listed} == {("v1", "ready"), ("v2", "ready")}
    status = cli.json("status", "v2")
    assert {s["target"] for s in status["endpoint_states"]} == {"local-eu", "local-us"}


def test_reads_for_scripts_and_region_drain(
    platform: RunningPlatform, digits: Path, tmp_path: Path, names: Any
) -> None:
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "digits")
    deployed = cli.json(
        "deploy", str(digits), "--name", "a1", "--file", "predict.model=model.json", "--wait"
    )
    assert deployed["status"] == "ready", deployed

    body = ("--json", f"@{digits / 'predict.json'}")
    assert cli.json("predict", "a1/predict", *body)["body"]["digit"] == 0

    targets = cli.json("targets")
    assert {"local-eu", "local-us"} <= {t["name"] for t in targets}
    cli.run("regions", "drain", "eu")
    try:
        served = cli.json("predict", "a1/predict", *body, "--repeat", "5")
        assert served["regions"] == {"us": 5}, served
    finally:
        cli.run("regions", "undrain", "eu")
    assert cli.json("predict", "a1/predict", *body, "--repeat", "5")["regions"] == {"eu": 5}

    events = [
        json.loads(line) for line in cli.run("events", "--output", "json").stdout.splitlines()
    ]
    types = {
        e["type"]
        for e in events
        if e["data"].get("name") == "a1" or e["data"].get("version") == "a1"
    }
    assert {"version.created", "version.built", "endpoint.ready"} <= types, types

    # Usage errors exit 2; a version that does not exist is a failed operation, exit 1.
    cli.run("alias", "set", "production", expect=2)
    cli.run("status", "nope", expect=1)
