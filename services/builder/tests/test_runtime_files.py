"""Valohai's runtime file: ``valohai-metadata.json`` is in the working directory before the
server starts, whichever way the endpoint starts (the runner, or a ``server-command``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dockyard_builder.image import endpoint_command
from dockyard_builder.runner import RUNNER_FILES, server_command
from dockyard_common import EndpointSpec
from dockyard_common.valohai_metadata import VALOHAI_METADATA_ENV, VALOHAI_METADATA_FILE

DOCUMENT = json.dumps({"deployment": {"name": "web"}, "endpoint": {"name": "greet"}})


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_server_command_finds_the_file_written_before_it_starts(tmp_path: Path) -> None:
    # A multi-line command with an export and a continuation, as valohai.yaml users write.
    script = "export GREETING=hello\necho $GREETING \\\n  from $(cat valohai-metadata.json)"
    done = run(server_command(script), tmp_path, **{VALOHAI_METADATA_ENV: DOCUMENT})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"hello from {DOCUMENT}\n"
    assert json.loads((tmp_path / VALOHAI_METADATA_FILE).read_text()) == json.loads(DOCUMENT)


def test_a_server_command_runs_as_written_without_the_document(tmp_path: Path) -> None:
    done = run(server_command('echo "$0" && exit 3'), tmp_path)
    assert (done.returncode, done.stdout) == (3, "sh\n")
    assert not (tmp_path / VALOHAI_METADATA_FILE).exists()


def test_a_directory_it_cannot_write_is_said_and_the_server_still_starts(tmp_path: Path) -> None:
    blocked = tmp_path / VALOHAI_METADATA_FILE
    blocked.mkdir()  # even root cannot open a directory for writing
    done = run(server_command("echo started"), tmp_path, **{VALOHAI_METADATA_ENV: DOCUMENT})
    assert done.stdout == "started\n"
    assert f"could not write {VALOHAI_METADATA_FILE} in {tmp_path}" in done.stderr


def test_the_images_server_command_is_this_one() -> None:
    spec = EndpointSpec.model_validate({"name": "web", "server-command": ["a", "b"]})
    assert endpoint_command(spec) == server_command("a && b")


def test_the_runner_writes_the_file_before_the_app_is_imported(tmp_path: Path) -> None:
    # The app reads the file at import, as Valohai endpoints do at start, and fails the
    # import without it: the runner then exits before serving.
    (tmp_path / "app.py").write_text(
        "import json, sys\n"
        "print('metadata', json.load(open('valohai-metadata.json'))['endpoint']['name'])\n"
        "sys.exit(7)\n"
    )
    done = run(
        [sys.executable, "-m", "dockyard_runner", "app:app"],
        tmp_path,
        PYTHONPATH=str(RUNNER_FILES),
        **{VALOHAI_METADATA_ENV: DOCUMENT},
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "metadata greet\n"


def test_the_runner_says_it_could_not_write_the_file_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / VALOHAI_METADATA_FILE).mkdir()
    (tmp_path / "app.py").write_text("import sys\nsys.exit(7)\n")
    done = run(
        [sys.executable, "-m", "dockyard_runner", "app:app"],
        tmp_path,
        PYTHONPATH=str(RUNNER_FILES),
        **{VALOHAI_METADATA_ENV: DOCUMENT},
    )
    assert done.returncode == 7
    assert f"could not write {os.path.join(tmp_path, VALOHAI_METADATA_FILE)}" in done.stderr


def test_the_runners_own_names_are_the_contracts() -> None:
    source = (RUNNER_FILES / "dockyard_runner.py").read_text()
    assert f'VALOHAI_METADATA_ENV = "{VALOHAI_METADATA_ENV}"' in source
    assert f'VALOHAI_METADATA_FILE = "{VALOHAI_METADATA_FILE}"' in source
