"""NATS (JetStream) and Redis in containers: the ``containers`` test backend.

The engine is whatever ``DOCKER_HOST`` names (``eval "$(bash .ci/podman.sh)"`` starts podman's
Docker API here); where none answers, the tests that need it are skipped with the reason.
No public image can be pulled on these machines, so the two images are made here, once per
machine, from the server binaries the local backend runs: a single-layer rootfs holding the
binary (and, for Redis, the shared libraries ``ldd`` lists), loaded as a docker-archive, which
both podman and Docker tag as the archive says.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import platform
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

# testcontainers reads these when it is imported. Its Ryuk reaper image cannot be pulled here,
# and inside a container (this machine has /.dockerenv) it would otherwise guess a gateway
# address and fail with KeyError: 'HostConfig'.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

import docker  # type: ignore[import-untyped]
import docker.errors  # type: ignore[import-untyped]
import nats.errors
import pytest
import redis.exceptions
from testcontainers.core.container import DockerContainer

from dockyard_common.errors import TransientError
from dockyard_common.runtime import connect_nats, connect_redis
from dockyard_platform.servers import find_nats_server, find_redis_server
from tests.harness.infrastructure import Infrastructure

__all__ = [
    "BUSYBOX_IMAGE",
    "NATS_IMAGE",
    "REDIS_IMAGE",
    "busybox_image",
    "container_infrastructure",
    "engine_or_skip",
    "nats_image",
    "redis_image",
]

BUSYBOX_IMAGE = "localhost/dockyard-test-busybox"
NATS_IMAGE = "localhost/dockyard-test-nats"
REDIS_IMAGE = "localhost/dockyard-test-redis"
NATS_PORT = 4222
REDIS_PORT = 6379
READY_TIMEOUT_S = 30.0
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


@contextmanager
def container_infrastructure() -> Iterator[Infrastructure]:
    """NATS with JetStream and Redis in containers on loopback ports; removed afterwards."""
    client = engine_or_skip()
    try:
        nats_tag, redis_tag = nats_image(client), redis_image(client)
    finally:
        client.close()
    nats_container = (
        DockerContainer(nats_tag)
        .with_name(f"dockyard-test-nats-{secrets.token_hex(4)}")
        .with_command(["-js", "-sd", "/data", "-p", str(NATS_PORT)])
    )
    redis_container = (
        DockerContainer(redis_tag)
        .with_name(f"dockyard-test-redis-{secrets.token_hex(4)}")
        .with_command(
            [
                *("--port", str(REDIS_PORT)),
                # Clients come through the engine's port forwarding, not from loopback, and
                # the engine publishes the port on the host's 127.0.0.1 only.
                *("--bind", "0.0.0.0", "--protected-mode", "no"),  # noqa: S104
                *("--save", "", "--appendonly", "no", "--dir", "/data"),
            ]
        )
    )
    with ExitStack() as stack:
        for container, port in ((nats_container, NATS_PORT), (redis_container, REDIS_PORT)):
            _publish_on_loopback(container, port)
            stack.enter_context(container)
        nats_url = f"nats://127.0.0.1:{_host_port(nats_container, NATS_PORT)}"
        redis_url = f"redis://127.0.0.1:{_host_port(redis_container, REDIS_PORT)}/0"
        _wait_until_ready(
            {"nats": nats_container, "redis": redis_container},
            {
                "nats": partial(_jetstream_answers, nats_url),
                "redis": partial(_redis_answers, redis_url),
            },
            READY_TIMEOUT_S,
        )
        yield Infrastructure("containers", nats_url, redis_url)


def nats_image(client: Any) -> str:
    """The NATS image for the ``nats-server`` the project installs; built if missing."""
    binary = Path(find_nats_server())
    version = _version_of(binary)
    return ensure_image(
        client,
        f"{NATS_IMAGE}:{version}",
        files={"/nats-server": binary},
        entrypoint=["/nats-server"],
    )


def redis_image(client: Any) -> str:
    """The Redis image for the ``redis-server`` the project uses, with its shared libraries."""
    binary = Path(find_redis_server())
    version = _version_of(binary)
    # Debian's redis-server is a symlink to redis-check-rdb, which picks its role by argv[0]:
    # copy the target's bytes under the server's name.
    files = {"/usr/bin/redis-server": binary.resolve()}
    files.update({str(library): library.resolve() for library in _shared_libraries(binary)})
    return ensure_image(
        client, f"{REDIS_IMAGE}:{version}", files=files, entrypoint=["/usr/bin/redis-server"]
    )


def engine_or_skip() -> Any:
    """A docker SDK client of the engine ``DOCKER_HOST`` names; skips the caller if none answers."""
    host = os.environ.get("DOCKER_HOST")
    tried = f"DOCKER_HOST={host}" if host else "unix:///var/run/docker.sock (DOCKER_HOST unset)"
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        pytest.skip(
            f"no container engine answers at {tried}: {exc}. "
            'Start one with: eval "$(bash .ci/podman.sh)"'
        )
    return client


def busybox_image(client: Any) -> str:
    """A one-binary userland (Debian's ``busybox-static``) with ``sh`` and ``/tmp``: a base
    image for endpoints (``busybox httpd -f -p $PORT``); skips the caller without busybox."""
    binary = Path("/bin/busybox")
    if not binary.exists():
        pytest.skip("no /bin/busybox to make a base image from: apt-get install busybox-static")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    # busybox picks its applet by argv[0]: a copy named sh is a shell.
    files = {"/bin/busybox": binary, "/bin/sh": binary}
    return ensure_image(client, f"{BUSYBOX_IMAGE}:{digest}", files=files, entrypoint=[])


def ensure_image(client: Any, tag: str, *, files: Mapping[str, Path], entrypoint: list[str]) -> str:
    """``tag`` as it is, or loaded from a rootfs of ``files`` (image path → host file)."""
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        # Dated by its newest file, so `podman images` says how old the binaries are.
        created = max(source.stat().st_mtime for source in files.values())
        client.images.load(_docker_archive(tag, _rootfs_layer(files), entrypoint, created))
    return tag


def _rootfs_layer(files: Mapping[str, Path]) -> bytes:
    """An uncompressed layer of ``files``, their parent directories, ``/data`` and ``/tmp``."""
    directories = {"/data": 0o777, "/tmp": 0o1777}
    for path in files:
        for parent in PurePosixPath(path).parents:
            if str(parent) != "/":
                directories.setdefault(str(parent), 0o755)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted(directories):
            entry = tarfile.TarInfo(directory.lstrip("/"))
            entry.type, entry.mode = tarfile.DIRTYPE, directories[directory]
            tar.addfile(entry)
        for path, source in sorted(files.items()):
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size, entry.mode = source.stat().st_size, 0o755
            with source.open("rb") as content:
                tar.addfile(entry, content)
    return buffer.getvalue()


def _docker_archive(tag: str, layer: bytes, entrypoint: list[str], created: float) -> bytes:
    """What ``docker save`` writes for a one-layer image named ``tag``."""
    config = json.dumps(
        {
            "architecture": _ARCHITECTURES.get(platform.machine(), platform.machine()),
            "os": "linux",
            "created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": {"Entrypoint": entrypoint, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha256(layer)}"]},
            # Builds on top count layers by their history: podman refuses a base without it.
            "history": [{"created_by": "dockyard test rootfs"}],
        },
        sort_keys=True,
    ).encode()
    config_name = f"{_sha256(config)}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in (
            ("layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest.encode()),
        ):
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            archive.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _version_of(binary: Path) -> str:
    """The version a server binary reports (``v2.15.1``, ``v=7.0.15``), for the image tag."""
    output = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    found = re.search(r"v=?(\d+(?:\.\d+)+)", output)
    if found is None:
        raise RuntimeError(f"{binary} --version printed no version: {output!r}")
    return found.group(1)


def _shared_libraries(binary: Path) -> list[Path]:
    """Every shared library ``ldd`` says ``binary`` loads, the dynamic loader included."""
    result = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=10
    )
    missing = [line.strip() for line in result.stdout.splitlines() if "not found" in line]
    if missing:
        raise RuntimeError(f"{binary} needs libraries this machine lacks: {missing}")
    return [Path(found.group(1)) for found in _LDD_PATH.finditer(result.stdout)]


def _publish_on_loopback(container: DockerContainer, port: int) -> None:
    """Publish ``port`` on a random port of 127.0.0.1 only, never on every interface."""
    # testcontainers types a binding as a bare host port; the docker SDK also takes
    # (address, port), and port None lets the engine choose.
    bindings: dict[str, Any] = container.ports
    bindings[f"{port}/tcp"] = ("127.0.0.1", None)


def _host_port(container: DockerContainer, port: int) -> int:
    """The host port the engine chose for ``port``, as the engine reports it."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    bindings = wrapped.ports.get(f"{port}/tcp") or []
    if not bindings:
        raise RuntimeError(f"{wrapped.name} has no host port for {port}: {wrapped.ports}")
    return int(bindings[0]["HostPort"])


def _log_tail(container: DockerContainer, lines: int = 20) -> str:
    stdout, stderr = container.get_logs()
    return "\n".join((stdout + stderr).decode(errors="replace").splitlines()[-lines:])


def _wait_until_ready(
    containers: Mapping[str, DockerContainer],
    checks: Mapping[str, Callable[[], Awaitable[None]]],
    timeout: float,
) -> None:
    """Block until every check passes; RuntimeError if a container stops, TimeoutError if slow."""
    deadline = time.monotonic() + timeout
    waiting = dict(checks)
    last_errors: dict[str, str] = {}
    # Each round runs on a thread with its own loop, so callers inside a running loop can wait.
    with ThreadPoolExecutor(max_workers=1) as pool:
        while True:
            for name, check in list(waiting.items()):
                error = pool.submit(asyncio.run, _error_of(check)).result()
                if error is None:
                    del waiting[name]
                else:
                    last_errors[name] = error
            if not waiting:
                return
            for name in waiting:
                containers[name].reload()
                if containers[name].status != "running":
                    raise RuntimeError(
                        f"the {name} container is {containers[name].status}; "
                        f"its log ends:\n{_log_tail(containers[name])}"
                    )
            if time.monotonic() > deadline:
                report = {
                    name: (last_errors[name], _log_tail(containers[name])) for name in waiting
                }
                raise TimeoutError(f"not ready within {timeout} s (last error, log): {report}")
            time.sleep(0.1)


async def _error_of(check: Callable[[], Awaitable[None]]) -> str | None:
    """None if ``check`` passes, else what went wrong."""
    try:
        await check()
    except (
        TransientError,
        nats.errors.Error,
        redis.exceptions.RedisError,
        OSError,
        TimeoutError,
    ) as exc:
        return repr(exc)
    return None


async def _jetstream_answers(url: str) -> None:
    """A JetStream API call ($JS.API.INFO) succeeds at ``url``."""
    client = await connect_nats(url, name="dockyard-test-ready", connect_timeout=1.0)
    try:
        await client.jetstream().account_info()
    finally:
        await client.close()


async def _redis_answers(url: str) -> None:
    """Redis at ``url`` answers PING."""
    client = connect_redis(url)
    try:
        await client.ping()
    finally:
        await client.aclose()
