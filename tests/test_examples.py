"""The examples: each ships what its README promises, and the ASGI one deploys as it says.

The WSGI example is deployed end to end by tests/test_cli_walkthrough.py (the main README's
walk-through). The ASGI one's ``server-command`` runs uvicorn, which reaches the endpoint
only through the builder's dependency layer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.harness.cli import logged_in_cli, train_example
from tests.harness.fixtures import Names, RunningPlatform

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("example", ["digits-wsgi", "digits-asgi"])
def test_example_ships_what_its_readme_promises(example: str) -> None:
    folder = EXAMPLES / example
    for name in ("valohai.yaml", "requirements.txt", "train.py", "README.md", "predict.json"):
        assert (folder / name).is_file(), f"{example} lacks {name}"
    endpoint = yaml.safe_load((folder / "valohai.yaml").read_text())[0]["endpoint"]
    assert [f["path"] for f in endpoint["files"]] == ["model.json"]
    assert "model.json" in (folder / ".dockyardignore").read_text()


# Its requirements (numpy, uvicorn) come from PyPI into the dependency layer: a few seconds
# of download the first time a session builds them, as on a user's first deploy.
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_asgi_example_deploys_as_its_readme_says_and_answers_through_the_router(
    platform: RunningPlatform, tmp_path: Path, names: Names
) -> None:
    folder = tmp_path / "digits-asgi"
    shutil.copytree(EXAMPLES / "digits-asgi", folder)
    train_example(folder)
    # Logged in as the main README says (default deployment: the WSGI example's), then the
    # example README's commands, run from the example's folder.
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "digits", cwd=folder)
    elsewhere = ("--deployment", "digits-asgi")
    deployed = cli.json("deploy", ".", *elsewhere, "--file", "predict.model=model.json", "--wait")
    assert deployed["status"] == "ready", deployed
    version = deployed["version"]
    roles = [layer["role"] for layer in cli.json("status", version, *elsewhere)["image"]["layers"]]
    assert "dependencies" in roles, f"numpy and uvicorn did not come as a layer: {roles}"

    body = ("--json", "@predict.json")
    answer = cli.json("predict", f"{version}/predict", *elsewhere, *body)
    assert (answer["status"], answer["body"]["digit"]) == (200, 0), answer
    assert answer["version"] == version and answer["region"] in {"eu", "us"}, answer

    cli.run("alias", "set", "production", version, *elsewhere)
    answer = cli.json("predict", "production/predict", *elsewhere, *body)
    assert (answer["body"]["digit"], answer["alias"]) == (0, "production"), answer

    # The app's own refusal of a bad body comes back through the router; the call failed.
    refused = cli.run(
        "predict", f"{version}/predict", *elsewhere, "--json", '{"pixels": [1]}', expect=1
    )
    assert "HTTP 400" in refused.stderr and version in refused.stderr, refused.stderr
