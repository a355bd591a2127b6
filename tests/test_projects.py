"""Real projects' forms, submitted as they are, on two targets of each kind.

Each folder of ``tests/projects`` is a small repository in a form public ``valohai.yaml``
projects take (a hard-coded port, a FastAPI app under uvicorn, a uv project, a command that
pip-installs, two images, an old-Python tag, a server that never listens, ...). Each is
deployed unchanged with two replicas on each of two targets, all at once, and either
answers through the router or fails with the reason a person needs. Two versions of the
hard-coded-port project run side by side.

The same table runs on two kinds of target:

- ``local``: the embedded default's two local targets (the session platform);
- ``container``: two container targets on podman (``docker``: skipped with the reason where
  no engine answers), on a platform of the module's own whose builder maps the projects'
  ``python:3.x`` tags onto a real Python image made from Debian's packages
  (``tests/harness/python_base.py``: bookworm, Python 3.11) through
  ``DOCKYARD_BASE_IMAGE_LAYOUTS``, as an operator of an offline machine does. There every
  version image holds that image's layers, its dependency layer is built for the Python the
  builder reads from the image, and its commands run on what the image really holds: that is
  what this kind exercises. It takes a few minutes: marked ``long`` (``make test-long``).

Where a kind gives another outcome, the table says so with :class:`PerKind`, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.archives import folder_tar_gz
from tests.harness.containers import engine_or_skip
from tests.harness.fixtures import Names, RunningPlatform, admin_client, start_platform_process
from tests.harness.flows import ensure_project
from tests.harness.python_base import python_base_reference

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECTS = Path(__file__).parent / "projects"
DEPLOY_WITHIN_S = 300.0
"""How long a version may take to be ready or failed (the container kind loads images)."""


@dataclass(frozen=True)
class Answers:
    """A project that serves: what each endpoint answers at its root, and words its
    endpoints' notes must hold."""

    expected: dict[str, str]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fails:
    """A project that fails: words its version's reason must hold."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class PerKind:
    """A project whose outcome differs by the kind of target, and why."""

    local: Answers | Fails
    container: Answers | Fails
    why: str


LOOPBACK_ONLY = ("declared port 8000 on 127.0.0.1 only", "listen on 0.0.0.0")
"""A container target's reason for a server its published port cannot reach."""

# The Python base image the container kind maps every python:3.x tag onto (python_base.py).
IMAGE_PYTHON = "Python 3.11 (read from its /usr/bin/python3 -> python3.11)"

EXPECTED: dict[str, Answers | Fails | PerKind] = {
    "port-any": Answers({"hello": "hello from port 8000 on 0.0.0.0"}),
    "port-loopback": PerKind(
        Answers({"hello": "hello from port 8000 on 127.0.0.1"}),
        Fails(LOOPBACK_ONLY),
        "a local replica is reached inside its namespace; a container's published port "
        "reaches its network interface, never its loopback (as on Docker and Kubernetes)",
    ),
    "wsgiref-greeter": Answers({"greet": "Hello world!"}),
    "fastapi-uvicorn": PerKind(
        Answers({"api": '{"served_by":"fastapi"}'}),
        Fails(LOOPBACK_ONLY),
        "uvicorn binds 127.0.0.1 unless told --host: as port-loopback; the dependency layer's "
        "uvicorn script still starts on the image's Python (else: exited with code 127)",
    ),
    "flask-factory": Answers({"web": '"served_by":"flask"'}),
    "two-images": PerKind(
        Answers({"greet": "greetings", "model": '{"model": "tiny"}'}),
        Answers(
            {"greet": "greetings", "model": '{"model": "tiny"}'},
            ("base image python:3.9", "base image python:3.11-slim"),
        ),
        "two images, each endpoint built on its own base; both tags are mapped onto the one "
        "Debian image here, so the two bases share their layers",
    ),
    "old-python": PerKind(
        Answers({"sum": ": 6"}, ("this machine's Python 3.11 on local targets",)),
        Answers({"sum": ": 6"}, (f"{IMAGE_PYTHON} on container and Kubernetes targets",)),
        "python:3.6 + unpinned numpy: a local target resolves numpy for this machine's Python; "
        "a container target for the image's, which is 3.11 (the tag is mapped onto the "
        "bookworm image), so a numpy for 3.11 must be in the dependency layer, not one for 3.6",
    ),
    "pip-at-start": Answers({"serve": "six 1.16.0"}),
    "uv-run": PerKind(
        Answers({"serve": "uv run, six 1.16.0"}),
        Fails(("exited with code 127", "uv: not found")),
        "a local target provides uv; a python:3.11 image has none (the official one neither), "
        "so `uv run` fails there, and the reason says so",
    ),
    "multiline-command": Answers({"greet": "hello, world"}),
    "subfolder": Answers({"sub": "served from service/"}),
    "resources": PerKind(
        Answers(
            {"sized": "greetings"},
            ("resources.cpu", "resources.memory", "node-selector", "tolerations"),
        ),
        Answers({"sized": "greetings"}, ("node-selector", "tolerations")),
        "a container target honours cpu and memory (engine limits), not the Kubernetes fields",
    ),
    "exits-at-random": Answers({"flaky": "alive, pid"}),
    "pin-no-wheel": Fails(("numpy", "1.13.3", "3.11")),
    "exits-at-once": Fails(("exited with code 3", "cannot load the model")),
    "never-listens": Fails(("declared port 8000", "it listens on 8001")),
}


def expected_on(kind: str, name: str) -> Answers | Fails:
    """What ``name`` must come to on targets of ``kind``."""
    expected = EXPECTED[name]
    if isinstance(expected, PerKind):
        chosen: Answers | Fails = getattr(expected, kind)
        return chosen
    return expected


@dataclass(frozen=True)
class Suite:
    """A platform and the two targets of one kind the projects deploy on."""

    kind: str
    platform: RunningPlatform
    targets: list[str]


@dataclass
class Outcome:
    version: dict[str, Any]
    answers: dict[str, tuple[int, str]]


async def deploy(
    suite: Suite, api: httpx.AsyncClient, owner: str, name: str, version: str
) -> Outcome:
    folder = PROJECTS / name
    base = f"/v1/projects/{owner}/demo"
    code = folder_tar_gz(folder)
    digest = "sha256:" + hashlib.sha256(code).hexdigest()
    assert (await api.put(f"{base}/blobs/{digest}", content=code)).status_code in (200, 201)
    deployment = f"{base}/deployments/{name}"
    if version == "v1":
        put = await api.put(deployment, json={"targets": suite.targets})
        assert put.status_code == 201, put.text
    yaml = (folder / "valohai.yaml").read_text()
    expected = expected_on(suite.kind, name)
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
    for _ in range(int(DEPLOY_WITHIN_S / 0.5)):
        seen = (await api.get(f"{deployment}/versions/{version}")).json()
        if seen["status"] in ("ready", "failed"):
            break
        await asyncio.sleep(0.5)
    answers = {}
    if seen["status"] == "ready":
        async with httpx.AsyncClient(timeout=10) as client:
            for endpoint in endpoints:
                url = f"{suite.platform.router_url}/{owner}/demo/{name}/{version}/{endpoint}/"
                answer = await client.get(url)
                answers[endpoint] = (answer.status_code, answer.text)
    return Outcome(seen, answers)


CONTAINER_TARGETS = {"box-eu": ("eu", "127.0.3.21"), "box-us": ("us", "127.0.4.21")}
MAPPED_TAGS = ("python:3.11", "python:3.11-slim", "python:3.9", "python:3.6")
"""The projects' image tags, each mapped onto the Debian-made Python image."""


@contextlib.contextmanager
def container_suite(directory: Path) -> Iterator[Suite]:
    """A platform of its own whose builder serves the projects' tags from the Debian-made
    image, with two container targets on podman; skips without an engine or mmdebstrap."""
    engine_or_skip().close()
    base = python_base_reference()
    running = start_platform_process(
        directory,
        {"DOCKYARD_BASE_IMAGE_LAYOUTS": json.dumps(dict.fromkeys(MAPPED_TAGS, base))},
    )
    try:
        with httpx.Client(
            base_url=running.api_url,
            headers={"Authorization": f"Bearer {running.admin_token}"},
            timeout=10,
        ) as api:
            for target, (region, address) in CONTAINER_TARGETS.items():
                body = {"region": region, "kind": "container", "address": address}
                put = api.put(f"/v1/targets/{target}", json=body)
                assert put.status_code in (200, 201), put.text
        yield Suite("container", running, list(CONTAINER_TARGETS))
    finally:
        running.stop()


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("container", marks=[pytest.mark.docker, pytest.mark.long])],
)
def suite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    """The kind of target the projects run on: the session platform's local targets, or
    container targets (see the module doc)."""
    if request.param == "local":
        yield Suite("local", request.getfixturevalue("platform"), ["local-eu", "local-us"])
        return
    with container_suite(tmp_path_factory.mktemp("container-platform")) as containers:
        yield containers


@pytest.fixture(scope="module")
def outcomes(suite: Suite) -> Iterator[dict[tuple[str, str], Outcome]]:
    """Every project deployed at once (and port-any twice): what became of each."""
    owner = "projects"

    async def everything() -> dict[tuple[str, str], Outcome]:
        async with admin_client(suite.platform) as api:
            api.timeout = httpx.Timeout(60.0)
            await ensure_project(api, Names(owner=owner, project="demo", deployment="-"))
            runs = [(name, "v1") for name in EXPECTED]
            done = await asyncio.gather(*(deploy(suite, api, owner, n, v) for n, v in runs))
            results = dict(zip(runs, done, strict=True))
            # A second version of a hard-coded-port project, while the first still serves.
            results[("port-any", "v2")] = await deploy(suite, api, owner, "port-any", "v2")
            return results

    yield asyncio.run(everything())


def reason_of(version: dict[str, Any]) -> str:
    parts = [version.get("error") or ""]
    parts += [state.get("reason") or "" for state in version.get("endpoint_states", [])]
    return "\n".join(parts)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_project_deploys_unchanged_and_answers_or_says_why_not(
    suite: Suite, outcomes: dict[tuple[str, str], Outcome], name: str
) -> None:
    outcome = outcomes[(name, "v1")]
    expected = expected_on(suite.kind, name)
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
    assert sorted({s["target"] for s in ready}) == suite.targets, version["endpoint_states"]
    assert all(len(s["upstreams"]) == 2 for s in ready), version["endpoint_states"]
    notes = "\n".join([*(version.get("image") or {}).get("notes", []), *notes_of(version)])
    missing = [word for word in expected.notes if word not in notes]
    assert not missing, f"{name}: the notes lack {missing}:\n{notes}"


def notes_of(version: dict[str, Any]) -> list[str]:
    return [note for state in version["endpoint_states"] for note in state["notes"]]


def test_two_versions_of_a_hard_coded_port_serve_at_once(
    outcomes: dict[tuple[str, str], Outcome],
) -> None:
    for version in ("v1", "v2"):
        outcome = outcomes[("port-any", version)]
        assert outcome.version["status"] == "ready", reason_of(outcome.version)
        status, text = outcome.answers["hello"]
        assert status == 200 and "port 8000" in text
