"""Real projects' forms, submitted as they are, on the embedded default's two local targets.

Each folder of ``tests/projects`` is a small repository in a form public ``valohai.yaml``
projects take (a hard-coded port, a FastAPI app under uvicorn, a uv project, a command that
pip-installs, two images, an old-Python tag, a server that never listens, ...). Each is
deployed unchanged with two replicas on each of two targets, all at once, and either
answers through the router or fails with the reason a person needs. Two versions of the
hard-coded-port project run side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.archives import folder_tar_gz
from tests.harness.fixtures import Names, RunningPlatform, admin_client
from tests.harness.flows import ensure_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECTS = Path(__file__).parent / "projects"
TARGETS = ["local-eu", "local-us"]


@dataclass(frozen=True)
class Answers:
    """A project that serves: what each endpoint answers at its root."""

    expected: dict[str, str]


@dataclass(frozen=True)
class Fails:
    """A project that fails: words its version's reason must hold."""

    words: tuple[str, ...]


EXPECTED: dict[str, Answers | Fails] = {
    "port-any": Answers({"hello": "hello from port 8000 on 0.0.0.0"}),
    "port-loopback": Answers({"hello": "hello from port 8000 on 127.0.0.1"}),
    "wsgiref-greeter": Answers({"greet": "Hello world!"}),
    "fastapi-uvicorn": Answers({"api": '{"served_by":"fastapi"}'}),
    "flask-factory": Answers({"web": '"served_by":"flask"'}),
    "two-images": Answers({"greet": "greetings", "model": '{"model": "tiny"}'}),
    "old-python": Answers({"sum": ": 6"}),
    "pip-at-start": Answers({"serve": "six 1.16.0"}),
    "uv-run": Answers({"serve": "uv run, six 1.16.0"}),
    "multiline-command": Answers({"greet": "hello, world"}),
    "subfolder": Answers({"sub": "served from service/"}),
    "resources": Answers({"sized": "greetings"}),
    "exits-at-random": Answers({"flaky": "alive, pid"}),
    "pin-no-wheel": Fails(("numpy", "1.13.3", "3.11")),
    "exits-at-once": Fails(("exited with code 3", "cannot load the model")),
    "never-listens": Fails(("declared port 8000", "it listens on 8001")),
}


@dataclass
class Outcome:
    version: dict[str, Any]
    answers: dict[str, tuple[int, str]]


async def deploy(
    api: httpx.AsyncClient, router_url: str, owner: str, name: str, version: str
) -> Outcome:
    folder = PROJECTS / name
    base = f"/v1/projects/{owner}/demo"
    code = folder_tar_gz(folder)
    digest = "sha256:" + hashlib.sha256(code).hexdigest()
    assert (await api.put(f"{base}/blobs/{digest}", content=code)).status_code in (200, 201)
    deployment = f"{base}/deployments/{name}"
    if version == "v1":
        put = await api.put(deployment, json={"targets": TARGETS})
        assert put.status_code == 201, put.text
    yaml = (folder / "valohai.yaml").read_text()
    expected = EXPECTED[name]
    endpoints = list(expected.expected) if isinstance(expected, Answers) else []
    body = {
        "name": version,
        "code": {"blob": digest},
        "valohai_yaml": yaml,
        "replicas": {e: {"min": 2, "max": 2} for e in endpoints},
    }
    created = await api.post(f"{deployment}/versions", json=body)
    assert created.status_code == 201, f"{name}: {created.text}"
    seen: dict[str, Any] = {}
    for _ in range(int(240 / 0.5)):
        seen = (await api.get(f"{deployment}/versions/{version}")).json()
        if seen["status"] in ("ready", "failed"):
            break
        await asyncio.sleep(0.5)
    answers = {}
    if seen["status"] == "ready":
        async with httpx.AsyncClient(timeout=10) as client:
            for endpoint in endpoints:
                url = f"{router_url}/{owner}/demo/{name}/{version}/{endpoint}/"
                answer = await client.get(url)
                answers[endpoint] = (answer.status_code, answer.text)
    return Outcome(seen, answers)


@pytest.fixture(scope="module")
def outcomes(platform: RunningPlatform) -> Iterator[dict[tuple[str, str], Outcome]]:
    """Every project deployed at once (and port-any twice): what became of each."""
    owner = "projects"

    async def everything() -> dict[tuple[str, str], Outcome]:
        async with admin_client(platform) as api:
            api.timeout = httpx.Timeout(60.0)
            await ensure_project(api, Names(owner=owner, project="demo", deployment="-"))
            runs = [(name, "v1") for name in EXPECTED]
            done = await asyncio.gather(
                *(deploy(api, platform.router_url, owner, n, v) for n, v in runs)
            )
            results = dict(zip(runs, done, strict=True))
            # A second version of a hard-coded-port project, while the first still serves.
            second = await deploy(api, platform.router_url, owner, "port-any", "v2")
            results[("port-any", "v2")] = second
            return results

    yield asyncio.run(everything())


def reason_of(version: dict[str, Any]) -> str:
    parts = [version.get("error") or ""]
    parts += [state.get("reason") or "" for state in version.get("endpoint_states", [])]
    return "\n".join(parts)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_project_deploys_unchanged_and_answers_or_says_why_not(
    outcomes: dict[tuple[str, str], Outcome], name: str
) -> None:
    outcome = outcomes[(name, "v1")]
    expected = EXPECTED[name]
    version = outcome.version
    if isinstance(expected, Fails):
        assert version["status"] == "failed", version
        reason = reason_of(version)
        missing = [word for word in expected.words if word not in reason]
        assert not missing, f"{name}: the reason lacks {missing}:\n{reason}"
        assert "code -15" not in reason and "SIGTERM" not in reason, reason
        return
    assert version["status"] == "ready", f"{name}: {version['status']}: {reason_of(version)}"
    for endpoint, words in expected.expected.items():
        status, text = outcome.answers[endpoint]
        assert status == 200 and words in text, f"{name}/{endpoint}: {status} {text!r}"
    ready = [s for s in version["endpoint_states"] if s["state"] == "ready"]
    assert sorted({s["target"] for s in ready}) == TARGETS, version["endpoint_states"]
    assert all(len(s["upstreams"]) == 2 for s in ready), version["endpoint_states"]


def test_two_versions_of_a_hard_coded_port_serve_at_once(
    outcomes: dict[tuple[str, str], Outcome],
) -> None:
    for version in ("v1", "v2"):
        outcome = outcomes[("port-any", version)]
        assert outcome.version["status"] == "ready", reason_of(outcome.version)
        status, text = outcome.answers["hello"]
        assert status == 200 and "port 8000" in text


def test_every_field_a_local_target_does_not_honour_is_in_the_notes(
    outcomes: dict[tuple[str, str], Outcome],
) -> None:
    states = outcomes[("resources", "v1")].version["endpoint_states"]
    notes = "\n".join(note for state in states for note in state["notes"])
    for field in ("resources.cpu", "resources.memory", "node-selector", "tolerations"):
        assert field in notes, notes
