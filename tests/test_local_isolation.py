"""A local replica can change nothing but its own version: not the platform, not another version.

User code runs on the platform's machine. Its command may pip-install (a real project's
does), write where it likes, read what it finds and try to undo its sandbox: a replica sees
a root of its own (this machine's system directories read-only, its image tree, environment
and home), has no capability to change it, and reaches no listener on this machine's
loopback (where NATS, Redis and the API are), not even through slirp4netns's gateway.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.harness.archives import tar_gz
from tests.harness.fixtures import Infrastructure, Names, RunningPlatform
from tests.harness.flows import create_version, put_deployment, upload_blob, wait_for_version

pytestmark = pytest.mark.e2e

PROBE = """\
import ctypes, json, os, socket, sys

ATTEMPTS = {attempts!r}
NATS_PORT = {nats_port}
DATA_DIR = {data_dir!r}


def tried(path):
    try:
        with open(path, "w") as handle:
            handle.write("written by a replica")
        return "written"
    except OSError as exc:
        return type(exc).__name__


def application(environ, start_response):
    results = {{}}
    try:  # before any write: what a replica could read of the platform's secret
        results["admin token read"] = open(ATTEMPTS["admin token"]).read()[:4]
    except OSError as exc:
        results["admin token read"] = type(exc).__name__
    held = sorted(os.listdir(DATA_DIR)) if os.path.isdir(DATA_DIR) else []
    results["data directory holds"] = held
    results.update({{name: tried(path) for name, path in ATTEMPTS.items()}})
    results["own environment"] = tried(os.path.join(sys.prefix, "mine.txt"))
    results["own home"] = tried(os.path.join(os.environ["HOME"], "mine.txt"))
    for name, host in (("nats on loopback", "127.0.0.1"), ("nats through the gateway", "10.0.2.2")):
        with socket.socket() as probe:
            probe.settimeout(2)
            reached = probe.connect_ex((host, NATS_PORT)) == 0
        results[name] = "reached" if reached else "unreachable"
    # Undoing the sandbox: uncover what lies under the root, or make a read-only place
    # writable again (root of its user namespace, but with no capability left).
    libc = ctypes.CDLL(None, use_errno=True)
    results["umount the root"] = "done" if libc.umount2(b"/", 2) == 0 else "refused"
    remount = libc.mount(None, sys.base_prefix.encode(), None, 32 | 4096, None)  # rw again
    results["remount the interpreter rw"] = "done" if remount == 0 else "refused"
    results["homes visible"] = os.path.exists("/home") or os.path.exists("/root/.ssh")
    results["system writable"] = tried("/etc/dockyard-was-here")
    # /proc/sysrq-trigger and the like are writable by their owner, this machine's root.
    results["proc read-only"] = bool(os.statvfs("/proc").f_flag & os.ST_RDONLY)
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
    probe = PROBE.format(
        attempts=attempts, nats_port=nats_port, data_dir=str(platform.data_dir)
    ).encode()
    second = await upload_blob(api, names, tar_gz({"app.py": probe}))
    body = {"code": {"blob": second}, "endpoints": [{"name": "predict", "wsgi": "app"}]}
    assert (await create_version(api, names, {"name": "v2", **body})).status_code == 201
    await wait_for_version(api, names, "v2", "ready")

    url = f"{platform.router_url}/{names.owner}/{names.project}/{names.deployment}/v2/predict/"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    results = json.loads(answer.text)
    # Nothing a replica writes reaches this machine: outside its own trees its root is
    # read-only, or (on a test machine, where the data directory is under /tmp) its /tmp is
    # a private one.
    for name, path in attempts.items():
        assert name == "admin token" or not Path(path).exists(), f"{path} was written"  # noqa: ASYNC240
    for name in ("platform environment", "platform site-packages"):
        # Refused; or, for a checkout under /tmp (a CI clone), written into the replica's
        # private /tmp, which the host check above shows is not this machine's.
        private = attempts[name].startswith(tempfile.gettempdir() + os.sep)
        allowed = ("OSError", "FileNotFoundError", *(("written",) if private else ()))
        assert results[name] in allowed, f"{name}: {results}"
    assert not (ours / "dockyard-was-here.pth").exists()
    assert not (other / "sitecustomize.py").exists()
    assert results["admin token read"] == "FileNotFoundError", results
    # Only the way down to its own trees: no admin token, no NATS store, no other replica.
    assert results["data directory holds"] in ([], ["runtime"]), results
    assert results["own environment"] == "written" and results["own home"] == "written"
    assert results["python"] != sys.prefix, "the replica ran in the platform's environment"
    assert results["nats on loopback"] == "unreachable", results
    assert results["nats through the gateway"] == "unreachable", results
    assert results["umount the root"] == "refused", results
    assert results["remount the interpreter rw"] == "refused", results
    assert results["homes visible"] is False, results
    assert results["system writable"] in ("OSError", "FileNotFoundError"), results
    assert results["proc read-only"] is True, results
    assert not Path("/etc/dockyard-was-here").exists()  # noqa: ASYNC240
