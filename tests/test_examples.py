"""The examples' own pieces: each trains, and the ASGI one serves through its server-command.

The WSGI example is deployed end to end by tests/test_cli_walkthrough.py. The ASGI one needs
uvicorn in the endpoint's Python, which arrives with the builder's dependency layer; until
then this test runs its ``server-command`` exactly as valohai.yaml gives it, here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from dockyard_cli.servers import free_port, wait_for_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("example", ["digits-wsgi", "digits-asgi"])
def test_example_ships_what_its_readme_promises(example: str) -> None:
    folder = EXAMPLES / example
    for name in ("valohai.yaml", "requirements.txt", "train.py", "README.md", "predict.json"):
        assert (folder / name).is_file(), f"{example} lacks {name}"
    endpoint = yaml.safe_load((folder / "valohai.yaml").read_text())[0]["endpoint"]
    assert [f["path"] for f in endpoint["files"]] == ["model.json"]
    assert "model.json" in (folder / ".dockyardignore").read_text()


def test_asgi_example_serves_a_prediction_through_its_server_command(tmp_path: Path) -> None:
    folder = tmp_path / "digits-asgi"
    shutil.copytree(EXAMPLES / "digits-asgi", folder)
    subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, timeout=120)
    command = yaml.safe_load((folder / "valohai.yaml").read_text())[0]["endpoint"]["server-command"]
    port = free_port()
    # ``python`` in the command is this test's interpreter, as the local runtime's shim makes it.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), PATH=path)
    server = subprocess.Popen(["sh", "-c", command], cwd=folder, env=env)
    try:
        wait_for_port("127.0.0.1", port, 30.0, server)  # type: ignore[arg-type]
        body = json.loads((folder / "predict.json").read_text())
        answer = httpx.post(f"http://127.0.0.1:{port}/", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["digit"] == 0, answer.text
        refused = httpx.post(f"http://127.0.0.1:{port}/", json={"pixels": [1]}, timeout=10)
        assert refused.status_code == 400
    finally:
        server.terminate()
        server.wait(10)
