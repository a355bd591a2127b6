"""The container driver's one seam to a Docker-compatible engine (Docker, or podman's service).

The ``docker`` SDK blocks, so every call runs on this module's own small thread pool (never
the event loop, and never the default pool that image unpacking and the like rely on). Exits
arrive from one events stream on a dedicated thread; a slow status poll backs it up in case
the stream breaks.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import docker
import docker.errors

from dockyard_common import PermanentError, TransientError, get_logger

__all__ = [
    "LABEL_KEY",
    "LABEL_MANIFEST",
    "LABEL_OWNER",
    "LABEL_PORT",
    "ContainerGone",
    "Engine",
    "EngineUnavailable",
    "Running",
    "container_limits",
    "key_hash",
]

log = get_logger(__name__)

LABEL_OWNER = "dockyard.managed-by"
LABEL_KEY = "dockyard.workload"
LABEL_MANIFEST = "dockyard.manifest"
LABEL_PORT = "dockyard.port"

_T = TypeVar("_T")


class EngineUnavailable(TransientError):
    """No container engine answers where the settings say it is."""


class ContainerGone(PermanentError):
    """The container was removed (a replica being replaced, say)."""


@dataclass(frozen=True)
class Running:
    """A container of ours the engine reports: its id, labels, state and published port."""

    id: str
    labels: dict[str, str]
    running: bool
    host_port: int | None


def container_limits(resources: dict[str, Any]) -> dict[str, Any]:
    """Engine limits for an endpoint's valohai.yaml ``resources`` (pure, no I/O).

    ``cpu`` (cores) and ``memory`` (megabytes) take their ``max``, else their ``min`` (a
    container gets no more than its limit); ``devices`` are not passed on.
    """
    limits: dict[str, Any] = {}
    for name, convert in (
        ("cpu", lambda cores: {"nano_cpus": int(cores * 1e9)}),
        ("memory", lambda megabytes: {"mem_limit": f"{int(megabytes)}m"}),
    ):
        wanted = resources.get(name)
        value = wanted.get("max", wanted.get("min")) if isinstance(wanted, dict) else wanted
        if value is None:
            continue
        try:
            amount = float(value)
        except (TypeError, ValueError):
            continue
        if amount > 0:
            limits.update(convert(amount))
    return limits


def key_hash(key: str) -> str:
    """A short, name-safe stand-in for a workload key (keys hold ``/``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Engine:
    """The engine at ``url``, seen through the calls the container driver makes."""

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        self.owner = owner
        self._client: Any = None
        self._connecting = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="container-engine")
        self._events: Any = None
        self._watcher: threading.Thread | None = None

    async def call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a blocking SDK call on the engine's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    @property
    def client(self) -> Any:
        """The SDK client (connected by :meth:`connect`)."""
        if self._client is None:
            raise EngineUnavailable(f"not connected to the container engine at {self.url}")
        return self._client

    def connect(self) -> None:
        """Connect and ping once (blocking); :class:`EngineUnavailable` with the reason if not."""
        with self._connecting:
            if self._client is None:
                self._client = self._connected()

    def _connected(self) -> Any:
        try:
            # A short timeout for the ping, so an engine that is away cannot stall start-up;
            # a long one afterwards, for pulls and builds.
            client = docker.DockerClient(base_url=self.url, timeout=5)
            client.ping()
            client.api.timeout = 600
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineUnavailable(
                f"no container engine answers at {self.url}: {exc}; set DOCKER_HOST "
                "(or DOCKYARD_DOCKER_HOST) to a Docker-compatible engine's API"
            ) from exc
        return client

    def watch_exits(self, on_exit: Callable[[str, int], None]) -> None:
        """Call ``on_exit(container id, exit code)`` (from a thread) whenever one of ours dies."""
        with self._connecting:
            if self._watcher is None:
                self._watcher = self._watch(on_exit)

    def _watch(self, on_exit: Callable[[str, int], None]) -> threading.Thread:
        # podman's Docker API ignores an "event" filter combined with others: filter here.
        self._events = self.client.events(
            decode=True, filters={"type": "container", "label": f"{LABEL_OWNER}={self.owner}"}
        )

        def pump() -> None:
            try:
                for event in self._events:
                    if (event.get("Action") or event.get("status")) != "die":
                        continue
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    code = int(attributes.get("exitCode") or -1)
                    on_exit(str(event.get("id") or (event.get("Actor") or {}).get("ID")), code)
            except Exception as exc:  # the stream ends when closed; the status poll takes over
                log.info("container.events.ended", error=repr(exc))

        watcher = threading.Thread(target=pump, name="container-events", daemon=True)
        watcher.start()
        return watcher

    def start(
        self,
        image: str,
        *,
        name: str,
        labels: dict[str, str],
        address: str,
        container_port: int,
        config: dict[str, Any],
        environment: dict[str, str],
        limits: dict[str, Any],
    ) -> Running:
        """Create and start a container, its port published on ``address`` (engine's choice)."""
        env = [str(item) for item in config.get("Env", [])]
        env.extend(f"{key}={value}" for key, value in environment.items())
        container = self.client.containers.create(
            image,
            command=config.get("Cmd"),
            working_dir=config.get("WorkingDir") or None,
            environment=env,
            name=name,
            labels={LABEL_OWNER: self.owner, LABEL_PORT: str(container_port), **labels},
            ports={f"{container_port}/tcp": (address, None)},
            # An init as PID 1 passes SIGTERM on: a server that sets no handler (PID 1 ignores
            # it by default) would otherwise sit out the whole grace period on every stop.
            init=True,
            detach=True,
            **limits,
        )
        container.start()
        return self.inspect(container.id)

    def inspect(self, container_id: str) -> Running:
        """What the engine says of one container now."""
        return self._running(self.client.containers.get(container_id))

    @staticmethod
    def _running(container: Any) -> Running:
        container_port = container.labels.get(LABEL_PORT, "")
        bindings = (container.ports or {}).get(f"{container_port}/tcp") or []
        port = int(bindings[0]["HostPort"]) if bindings and bindings[0].get("HostPort") else None
        return Running(container.id, dict(container.labels), container.status == "running", port)

    def exit_code(self, container_id: str) -> int | None:
        """The exit code of a stopped container, None while it runs."""
        container = self.client.containers.get(container_id)
        if container.status in ("running", "created", "restarting"):
            return None
        return int(container.attrs.get("State", {}).get("ExitCode", -1))

    def log_tail(self, container_id: str, lines: int) -> str:
        """The last lines a container printed (stdout and stderr)."""
        try:
            output = self.client.containers.get(container_id).logs(tail=lines)
        except docker.errors.NotFound:
            return ""
        return bytes(output).decode("utf-8", errors="replace").strip()

    def log_lines(self, container_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines a container printed (stdout and stderr), oldest first.

        Raises :class:`ContainerGone` when it no longer exists, :class:`EngineUnavailable`
        when the engine does not answer.
        """
        try:
            output = self.client.containers.get(container_id).logs(tail=lines)
        except docker.errors.NotFound as exc:
            raise ContainerGone(f"container {container_id[:12]} no longer exists") from exc
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineUnavailable(f"the container engine at {self.url}: {exc}") from exc
        return bytes(output).decode("utf-8", errors="replace").splitlines()

    def remove(self, container_id: str, grace_s: float) -> None:
        """Stop (SIGTERM, then SIGKILL after ``grace_s``) and remove a container; gone is fine."""
        try:
            container = self.client.containers.get(container_id)
            if container.status == "running":
                container.stop(timeout=int(grace_s))
            container.remove(force=True)
        except docker.errors.NotFound:
            return

    def remove_image(self, reference: str) -> None:
        """Untag an image we made; one still in use (by anyone) or already gone is left."""
        try:
            self.client.images.remove(reference)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            log.info("container.image.kept", image=reference, reason=str(exc.explanation or exc))

    def ours(self) -> list[Running]:
        """Every container this installation labelled, running or not."""
        found = self.client.containers.list(
            all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}
        )
        return [self._running(container) for container in found]

    def close(self) -> None:
        """Stop the events stream and the thread pool, and disconnect."""
        if self._events is not None:
            self._events.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
            self._client = None
