"""``dockyard deploy`` and ``dockyard start``: put a version on its targets, follow it to ready.

``deploy`` packs the code, uploads what the server lacks and submits a version; ``start``
asks for a stopped version to run again. Either way the event feed is opened *before* the
request, so no event of the build or rollout can slip by between it and the first read.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard_cli.errors import ApiError
from dockyard_cli.events import FeedEvent, describe, mebibytes, read_feed
from dockyard_cli.packing import pack, packed_files
from dockyard_cli.scope import Scope

if TYPE_CHECKING:
    import httpx

    from dockyard_cli.client import ApiClient

__all__ = [
    "VALOHAI_YAML",
    "DeployRequest",
    "Deployed",
    "deploy",
    "endpoint_urls",
    "ensure_deployment",
    "missing_endpoint_definitions",
    "parse_file_options",
    "start",
    "upload_blob",
]

VALOHAI_YAML = "valohai.yaml"
_ENDPOINT_ITEM = re.compile(r"^\s*-?\s*endpoint\s*:", re.MULTILINE)

Say = Callable[[str], None]


@dataclass
class DeployRequest:
    """What the user asked ``dockyard deploy`` for."""

    folder: Path
    scope: Scope
    name: str | None = None
    endpoints: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Path]] = field(default_factory=dict)
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    wait: bool = False
    alias: str | None = None
    timeout_s: float = 600.0


@dataclass
class Deployed:
    """The outcome: the version as last read, and whether it ended ready."""

    version: dict[str, Any]
    uploaded: list[str]
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Ready when waited for; submitted when not."""
        return self.version.get("status") not in ("failed", "stopped", "stopping")


def parse_file_options(values: list[str]) -> dict[str, dict[str, Path]]:
    """``ENDPOINT.NAME=PATH`` options as endpoint → file name → path; ValueError if malformed."""
    files: dict[str, dict[str, Path]] = {}
    for value in values:
        key, sep, path = value.partition("=")
        endpoint, dot, name = key.partition(".")
        if not sep or not dot or not endpoint or not name or not path:
            raise ValueError(f"--file {value!r}: write it as ENDPOINT.NAME=PATH")
        files.setdefault(endpoint, {})[name] = Path(path)
    return files


class OptionError(ValueError):
    """A malformed command-line option; ``option`` names it (``--idle``), for the usage error."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def _count(text: str) -> int | None:
    """A replica count: a whole number, not negative (``1.5`` and ``inf`` are not)."""
    return int(text) if text.strip().isdigit() else None


def parse_replicas_options(values: list[str], idle: list[str]) -> dict[str, dict[str, Any]]:
    """``ENDPOINT=MIN:MAX[:TARGET_CONCURRENCY]`` and ``ENDPOINT=SECONDS`` (the idle time of
    an endpoint with min 0) options as the version body's ``replicas``; :class:`OptionError`
    naming the option if malformed (the server checks the rest: min <= max, the bounds)."""
    replicas: dict[str, dict[str, Any]] = {}
    for value in values:
        endpoint, sep, counts = value.partition("=")
        parts = counts.split(":")
        usage = f"--replicas {value!r}: write it as ENDPOINT=MIN:MAX[:TARGET]"
        if not sep or not endpoint or len(parts) not in (2, 3):
            raise OptionError("--replicas", usage)
        low, high = _count(parts[0]), _count(parts[1])
        if low is None or high is None:
            raise OptionError("--replicas", f"{usage}, MIN and MAX whole numbers (0, 1, 2...)")
        replicas[endpoint] = {"min": low, "max": high}
        if len(parts) == 3:
            try:
                target = float(parts[2])
            except ValueError:
                target = math.nan
            if not (math.isfinite(target) and target > 0):
                raise OptionError("--replicas", f"{usage}, TARGET a number above 0 (e.g. 2)")
            replicas[endpoint]["target_concurrency"] = target
    for value in idle:
        endpoint, sep, seconds = value.partition("=")
        try:
            idle_s = float(seconds)
        except ValueError:
            idle_s = math.nan
        if not sep or not endpoint or not (math.isfinite(idle_s) and idle_s >= 0):
            raise OptionError("--idle", f"--idle {value!r}: write it as ENDPOINT=SECONDS")
        if endpoint not in replicas:
            raise OptionError(
                "--idle", f"--idle {value!r}: give {endpoint} --replicas {endpoint}=0:MAX too"
            )
        if replicas[endpoint]["min"] != 0:
            raise OptionError(
                "--idle",
                f"--idle {value!r}: only an endpoint with MIN 0 idles; {endpoint} has "
                f"--replicas min {replicas[endpoint]['min']}",
            )
        replicas[endpoint]["idle_s"] = idle_s
    return replicas


def missing_endpoint_definitions(folder: Path) -> str | None:
    """Why ``folder`` cannot be deployed as it is (None: it can): the server reads the
    endpoints from the ``valohai.yaml`` at the root of the code it gets."""
    path = folder / VALOHAI_YAML
    if not path.is_file():
        return (
            f"{folder} has no {VALOHAI_YAML} at its root: deploy the folder that holds the "
            "endpoint definitions (see examples/digits-wsgi)"
        )
    if VALOHAI_YAML not in packed_files(folder):
        return f"{path} is left out by .gitignore or .dockyardignore: the server would not get it"
    if not _ENDPOINT_ITEM.search(path.read_text(errors="replace")):
        return (
            f"{path} defines no endpoint (an '- endpoint:' item with a name, and wsgi or "
            "server-command)"
        )
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def upload_blob(
    client: ApiClient, scope: Scope, path: Path, digest: str | None = None
) -> tuple[str, bool]:
    """Upload ``path`` unless the project holds it already (HEAD first): (digest, uploaded)."""
    import httpx

    digest = digest or _sha256(path)
    url = f"{scope.project_path}/blobs/{digest}"
    if client.call("HEAD", url, expect=(404,)).status_code == 200:
        return digest, False
    with path.open("rb") as content:
        client.call(
            "PUT",
            url,
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=httpx.Timeout(30.0, write=None, read=300.0),
        )
    return digest, True


def ensure_deployment(client: ApiClient, scope: Scope, targets: list[str], say: Say) -> None:
    """Create the project and the deployment when missing (the deployment on ``targets``,
    default every target); an existing deployment is left as it is."""
    if client.call("GET", scope.project_path, expect=(404,)).status_code == 404:
        client.put(scope.project_path, {})
        say(f"created project {scope.owner}/{scope.project}")
    if client.call("GET", scope.deployment_path, expect=(404,)).status_code == 404:
        chosen = targets or sorted(t["name"] for t in client.items("/v1/targets"))
        client.put(scope.deployment_path, {"targets": chosen})
        say(f"created deployment {scope.deployment} on {', '.join(chosen)}")


def endpoint_urls(
    router_url: str | None, scope: Scope, version: dict[str, Any], alias: str | None
) -> dict[str, str]:
    """``<version>/<endpoint>`` (and ``<alias>/<endpoint>``) → the URL the router serves."""
    base = (router_url or "<router>").rstrip("/")
    urls = {}
    for endpoint in version.get("endpoints", []):
        for name in [version["name"], *([alias] if alias else [])]:
            urls[f"{name}/{endpoint['name']}"] = base + scope.route(name, endpoint["name"])
    return urls


def _settled(client: ApiClient, path: str, within_s: float) -> dict[str, Any]:
    """The version once the API has folded the last report in (status ready or failed)."""
    deadline = time.monotonic() + within_s
    version: dict[str, Any] = client.get(path)
    while version.get("status") not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        version = client.get(path)
    return version


def follow_rollout(
    client: ApiClient,
    feed: httpx.Response,
    version: dict[str, Any],
    scope: Scope,
    timeout_s: float,
    say: Say,
) -> dict[str, Any]:
    """Read the feed until every endpoint is ready on every target, or something failed."""
    path = scope.version_path(version["name"])
    wanted = {(e["name"], t) for e in version["endpoints"] for t in version["targets"]}
    ready: set[tuple[str, str]] = set()
    deadline = time.monotonic() + timeout_s
    for event in read_feed(lines_until(feed.iter_lines(), deadline)):
        if not _is_ours(event, version["name"]):
            continue
        say("  " + describe(event))
        if event.type in ("version.build.failed", "endpoint.failed"):
            return _settled(client, path, 10.0)
        if event.type == "endpoint.ready":
            ready.add((event.data["endpoint"], event.data["target"]))
            if ready >= wanted:
                return _settled(client, path, 10.0)
    raise ApiError(
        f"version {version['name']} was not ready within {timeout_s:g} s; "
        f"see dockyard status {version['name']}"
    )


def lines_until(lines: Iterable[str], deadline: float) -> Iterator[str]:
    """The lines until ``deadline`` (``time.monotonic()``) has passed. The feed's keep-alive
    comments (every 15 s) bring a quiet feed back here to look at the clock."""
    for line in lines:
        if time.monotonic() > deadline:
            return
        yield line


@contextmanager
def _feed(client: ApiClient, scope: Scope) -> Iterator[httpx.Response]:
    """The deployment's version and endpoint events from now on."""
    feed_scope = {"owner": scope.owner, "project": scope.project, "deployment": scope.deployment}
    with client.stream(
        "/v1/events", types="version.*,endpoint.*", **feed_scope, idle_s=None
    ) as feed:
        yield feed


def _is_ours(event: FeedEvent, name: str) -> bool:
    data = event.data
    return (data.get("version") if event.type.startswith("endpoint.") else data.get("name")) == name


def deploy(client: ApiClient, request: DeployRequest, say: Say) -> Deployed:
    """Pack, upload, submit and (with ``wait``) follow one version; see the module doc."""
    scope = request.scope
    ensure_deployment(client, scope, request.targets, say)
    uploaded: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-") as scratch:
        packed = pack(request.folder, Path(scratch) / "code.tar.gz")
        say(f"packed {len(packed.files)} files, {mebibytes(packed.size)} ({packed.digest[:19]})")
        digest, sent = upload_blob(client, scope, packed.path, packed.digest)
        say("uploaded the code" if sent else "the server holds this code already")
        if sent:
            uploaded.append(digest)
    files: dict[str, dict[str, str]] = {}
    for endpoint, named in request.files.items():
        for name, path in named.items():
            file_digest, sent = upload_blob(client, scope, path)
            files.setdefault(endpoint, {})[name] = file_digest
            say(f"{'uploaded' if sent else 'the server holds'} {endpoint}.{name} ({path.name})")
            if sent:
                uploaded.append(file_digest)
    body: dict[str, Any] = {"code": {"blob": packed.digest}}
    if request.name:
        body["name"] = request.name
    if request.endpoints:
        body["endpoints"] = request.endpoints
    if files:
        body["files"] = files
    if request.replicas:
        body["replicas"] = request.replicas
    waiting = request.wait or request.alias is not None
    if not waiting:
        version = client.post(f"{scope.deployment_path}/versions", body)
        say(f"submitted version {version['name']}")
        return Deployed(version, uploaded)
    with _feed(client, scope) as feed:
        version = client.post(f"{scope.deployment_path}/versions", body)
        say(f"submitted version {version['name']}; following its build and rollout")
        version = follow_rollout(client, feed, version, scope, request.timeout_s, say)
    if version.get("status") != "ready":
        return Deployed(version, uploaded)
    if request.alias:
        client.put(f"{scope.deployment_path}/aliases/{request.alias}", {"version": version["name"]})
        say(f"alias {request.alias} → {version['name']}")
    return Deployed(
        version, uploaded, endpoint_urls(client.login.router_url, scope, version, request.alias)
    )


def start(
    client: ApiClient, scope: Scope, name: str, *, wait: bool, timeout_s: float, say: Say
) -> Deployed:
    """Ask for the stopped version ``name`` to run again; with ``wait``, follow it to ready.

    A version that is not stopped is left as it is (the answer says where it stands)."""
    path = scope.version_path(name)
    if not wait:
        response = client.call("POST", f"{path}/start")
        version = response.json()
        say(_start_said(name, response.status_code, version))
        return Deployed(version, [])
    with _feed(client, scope) as feed:
        response = client.call("POST", f"{path}/start")
        version = response.json()
        say(_start_said(name, response.status_code, version))
        if response.status_code == 202:
            version = follow_rollout(client, feed, version, scope, timeout_s, say)
    if response.status_code != 202:  # running already: it may still be on its way to ready
        version = _settled(client, path, timeout_s)
    urls = endpoint_urls(client.login.router_url, scope, version, None)
    return Deployed(version, [], urls if version.get("status") == "ready" else {})


def _start_said(name: str, status_code: int, version: dict[str, Any]) -> str:
    if status_code == 202:
        return f"starting version {name} on {', '.join(version.get('targets', []))}"
    return f"version {name} is not stopped (it is {version.get('status')}): nothing to start"
