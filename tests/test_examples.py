"""The examples: each ships what its README promises, and its README runs as written.

The main README's walk-through deploys the WSGI example too (tests/test_readme.py,
tests/test_cli_walkthrough.py). The ASGI one's ``server-command`` runs uvicorn, which reaches
the endpoint only through the builder's dependency layer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.cli import logged_in_cli
from tests.harness.fixtures import Names, RunningPlatform

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.mark.parametrize("example", ["digits-wsgi", "digits-asgi"])
def test_example_ships_what_its_readme_promises(example: str) -> None:
    folder = EXAMPLES / example
    for name in ("valohai.yaml", "requirements.txt", "train.py", "README.md", "predict.json"):
        assert (folder / name).is_file(), f"{example} lacks {name}"
    endpoint = yaml.safe_load((folder / "valohai.yaml").read_text())[0]["endpoint"]
    assert [f["path"] for f in endpoint["files"]] == ["model.json"]
    assert "model.json" in (folder / ".dockyardignore").read_text()


@pytest.mark.parametrize("example", ["digits-wsgi", "digits-asgi"])
def test_the_trained_model_is_not_committed_by_accident(example: str) -> None:
    # train.py writes model.json beside the code: `git add .` must leave it out.
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", f"examples/{example}/model.json"],
        cwd=REPO,
        check=False,
    )
    assert ignored.returncode == 0, f"examples/{example}/model.json is not ignored by git"


def readme_block(example: str) -> str:
    """The first ``sh`` block of the example's README."""
    found = re.search(r"```sh\n(.*?)```", (EXAMPLES / example / "README.md").read_text(), re.S)
    assert found, f"examples/{example}/README.md has no sh block"
    return found.group(1)


def test_the_readme_blocks_name_their_versions() -> None:
    # A reader copies the commands as they stand: no <version> to fill in from an output.
    for example in ("digits-wsgi", "digits-asgi"):
        block = readme_block(example)
        assert "<" not in block, f"examples/{example}/README.md has a placeholder:\n{block}"
        assert "--name" in block, f"examples/{example}/README.md deploys an unnamed version"


# Their requirements (numpy; uvicorn for ASGI) come from PyPI into the dependency layer: a
# few seconds of download the first time a session builds them, as on a user's first deploy.
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("example", ["digits-wsgi", "digits-asgi"])
def test_the_example_readme_runs_as_written_and_answers_through_the_router(
    platform: RunningPlatform, tmp_path: Path, names: Names, example: str
) -> None:
    folder = tmp_path / example
    shutil.copytree(EXAMPLES / example, folder)
    # Logged in as the main README says (default deployment: the WSGI example's), then the
    # example README's block, run from the example's folder as a reader pastes it.
    cli = logged_in_cli(platform, tmp_path / "config", names.owner, "digits", cwd=folder)
    env = {**cli.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block(example)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    said = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"examples/{example}/README.md failed:\n{said}"
    assert '"digit": 0' in done.stdout, said
    version = "w1" if example == "digits-wsgi" else "a1"
    assert f"served by version {version}" in done.stderr, said
    if example == "digits-asgi":
        deployment = ("--deployment", "digits-asgi")
        status = cli.json("status", version, *deployment)
        roles = [layer["role"] for layer in status["image"]["layers"]]
        # Local targets only: the wheelhouse their version's environment is installed from.
        assert any(r.startswith("wheels:") for r in roles), f"numpy and uvicorn: {roles}"
        assert "(alias production)" in done.stderr, said
        # The app's own refusal of a bad body comes back through the router; the call failed.
        refused = cli.run(
            "predict", f"{version}/predict", *deployment, "--json", '{"pixels": [1]}', expect=1
        )
        assert "HTTP 400" in refused.stderr and version in refused.stderr, refused.stderr
