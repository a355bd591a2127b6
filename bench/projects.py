"""Submit → first answer for each form real projects take (tests/projects), on two local targets.

One embedded platform, started as ``make run`` starts it. Each project of ``tests/projects``
that serves is submitted unchanged (its ``valohai.yaml``, its code as a tar.gz), one after
the other so that builds do not share the CPUs, to a deployment on ``local-eu`` and
``local-us`` with one replica each. The version is polled every 20 ms: *build* is submit →
``built`` (or later), *schedule* is built → ``ready`` on both targets, *answer* is ready → the
first 200 through the router. A second submission of the same code (a new version name)
shows the figures with the builder's caches warm. Package downloads come from PyPI, so the
first row of a project with requirements depends on the network.

Run: ``.venv/bin/python bench/projects.py``; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests.harness
from tests.harness.archives import folder_tar_gz

try:
    from bench.common import Platform
except ModuleNotFoundError:  # run as ``python bench/projects.py``: bench/ is on sys.path
    from common import Platform  # type: ignore[no-redef,import-not-found]

PROJECTS = Path(__file__).resolve().parents[1] / "tests" / "projects"
SERVING = [
    "port-any",
    "port-loopback",
    "wsgiref-greeter",
    "fastapi-uvicorn",
    "flask-factory",
    "two-images",
    "old-python",
    "pip-at-start",
    "uv-run",
    "multiline-command",
    "subfolder",
    "resources",
]
"""The projects that serve (the others fail on purpose: tests/test_projects.py)."""
OWNER, PROJECT = "bench", "forms"


def endpoints_of(yaml: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in yaml.splitlines() if "name:" in line]


def deploy(api: httpx.Client, router_url: str, name: str, version: str) -> dict[str, Any]:
    folder = PROJECTS / name
    base = f"/v1/projects/{OWNER}/{PROJECT}"
    deployment = f"{base}/deployments/{name}"
    code = folder_tar_gz(folder)
    digest = "sha256:" + hashlib.sha256(code).hexdigest()
    api.put(f"{base}/blobs/{digest}", content=code).raise_for_status()
    api.put(deployment, json={"targets": ["local-eu", "local-us"]})
    yaml = (folder / "valohai.yaml").read_text()
    body = {"name": version, "code": {"blob": digest}, "valohai_yaml": yaml}
    submitted = time.monotonic()
    api.post(f"{deployment}/versions", json=body).raise_for_status()
    built = ready = None
    status = "pending"
    while time.monotonic() - submitted < 300:
        status = api.get(f"{deployment}/versions/{version}").json()["status"]
        now = time.monotonic()
        if built is None and status not in ("pending", "building"):
            built = now
        if status in ("ready", "failed"):
            ready = now
            break
        time.sleep(0.02)
    if status != "ready" or built is None or ready is None:
        return {"project": name, "version": version, "status": status}
    endpoint = endpoints_of(yaml)[0]
    url = f"{router_url}/{OWNER}/{PROJECT}/{name}/{version}/{endpoint}/"
    while time.monotonic() - ready < 30 and httpx.get(url, timeout=10).status_code != 200:
        time.sleep(0.02)
    answered = time.monotonic()
    return {
        "project": name,
        "version": version,
        "status": status,
        "build_s": round(built - submitted, 2),
        "schedule_s": round(ready - built, 2),
        "answer_s": round(answered - ready, 3),
        "total_s": round(answered - submitted, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=SERVING, help="projects to measure")
    args = parser.parse_args()
    platform = Platform(Path(tempfile.mkdtemp(prefix="bench-projects-")))
    platform.start()
    rows = []
    try:
        headers = {"Authorization": f"Bearer {platform.admin_token}"}
        with httpx.Client(base_url=platform.api_url, headers=headers, timeout=60) as api:
            api.post("/v1/owners", json={"name": OWNER})
            api.put(f"/v1/projects/{OWNER}/{PROJECT}", json={})
            for name in args.only:
                for version in ("cold", "warm"):
                    row = deploy(api, platform.router_url, name, version)
                    rows.append(row)
                    figures = "  ".join(f"{k} {v}" for k, v in row.items() if k.endswith("_s"))
                    print(f"{name:<18} {version:<5} {row['status']:<6} {figures}", flush=True)
    finally:
        platform.stop()
    table = [
        {
            "name": f"{row['project']} ({row['version']}) submit -> answer s",
            "subject": row.get("total_s"),
            "reference": None,
            "ratio": None,
            "raw": row,
        }
        for row in rows
    ]
    print(json.dumps({"benchmark": "projects", "rows": table}))
    return 0 if all(row["status"] == "ready" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
