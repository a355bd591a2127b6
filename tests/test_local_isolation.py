"""A local replica can change nothing but its own version: not the platform, not another version.

User code runs on the platform's machine. Its command may pip-install (a real project's
does), write where it likes and read what it finds: a replica in its namespaces sees the
platform's install read-only, the data directory empty but for its own image tree,
environment and home, and no listener on this machine's loopback (where NATS, Redis and
the API are).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Infrastructure, Names, RunningPlatform
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version

pytestmark = pytest.mark.e2e

PROBE = """\
import json, os, socket, sys

ATTEMPTS = {attempts!r}
NATS_PORT = {nats_port}


def tried(path):
    try:
        with open(path, "w") as handle:
            handle.write("written by a replica")
        return "written"
    except OSError as exc:
        return type(exc).__name__


def application(environ, start_response):
    results = {{name: tried(path) for name, path in ATTEMPTS.items()}}
    results["own environment"] = tried(os.path.join(sys.prefix, "mine.txt"))
    results["own home"] = tried(os.path.join(os.environ["HOME"], "mine.txt"))
    try:
        results["admin token"] = open(ATTEMPTS["admin token"]).read()[:4]
    except OSError as exc:
        results["admin token"] = type(exc).__name__
    with socket.socket() as probe:
        probe.settimeout(2)
        reached = probe.connect_ex(("127.0.0.1", NATS_PORT)) == 0
    results["nats on loopback"] = "reached" if reached else "unreachable"
    results["python"] = sys.prefix
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(results).encode()]
"""

PLAIN = b"""\
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"v1"]
"""


async def test_a_replica_cannot_write_into_the_platform_or_another_version(
    api: httpx.AsyncClient, platform: RunningPlatform, infrastructure: Infrastructure, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    first = await upload_blob(api, names, tar_gz({"app.py": PLAIN}))
    body = {"code": {"blob": first}, "endpoints": [{"name": "predict", "wsgi": "app"}]}
    assert (await create_version(api, names, {"name": "v1", **body})).status_code == 201
    first_ready = await wait_for_version(api, names, "v1", "ready")
    runtime = platform.data_dir / "runtime"
    manifest = first_ready["image"]["endpoints"]["predict"].removeprefix("sha256:")
    other = next((runtime / "envs" / manifest).glob("lib/python*/site-packages"))
    ours = Path(sys.prefix)  # the tests run in the platform's own environment
    site_packages = next(ours.glob("lib/python*/site-packages"))  # noqa: ASYNC240
    nats_port = int(infrastructure.nats_url.rpartition(":")[2])
    attempts = {
        "platform environment": str(ours / "dockyard-was-here.pth"),
        "platform site-packages": str(site_packages / "x.pth"),
        "another version's environment": str(other / "sitecustomize.py"),
        "another version's tree": str(runtime / "images" / "planted.txt"),
        "admin token": str(platform.data_dir / "admin-token"),
    }
    probe = PROBE.format(attempts=attempts, nats_port=nats_port).encode()
    second = await upload_blob(api, names, tar_gz({"app.py": probe}))
    body = {"code": {"blob": second}, "endpoints": [{"name": "predict", "wsgi": "app"}]}
    assert (await create_version(api, names, {"name": "v2", **body})).status_code == 201
    await wait_for_version(api, names, "v2", "ready")

    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v2/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    results = json.loads(answer.text)
    for name, path in attempts.items():
        assert results[name] in ("OSError", "FileNotFoundError"), f"{name}: {results}"
        assert name == "admin token" or not Path(path).exists(), f"{path} was written"  # noqa: ASYNC240
    assert not (ours / "dockyard-was-here.pth").exists()
    assert not (other / "sitecustomize.py").exists()
    assert results["admin token"] == "FileNotFoundError", results  # not even there
    assert results["own environment"] == "written" and results["own home"] == "written"
    assert results["python"] != sys.prefix, "the replica ran in the platform's environment"
    assert results["nats on loopback"] == "unreachable", results
