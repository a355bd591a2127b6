"""The container driver's one seam to a Docker-compatible engine (Docker, or podman's service).

The ``docker`` SDK blocks, so every call runs on this module's own small thread pool (never
the event loop, and never the default pool that image unpacking and the like rely on). Exits
arrive from one events stream on a dedicated thread; a slow status poll backs it up in case
the stream breaks.

Every SDK call is made here, and what the SDK raises is translated here, once, into:

    EngineError (DockyardError)
    ├── EngineUnavailable (TransientError)  no engine answers, or it stopped answering
    └── EngineRefused (PermanentError)      the engine answered with an error
        └── ContainerGone                   the container asked about no longer exists
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import IO, Any, TypeVar

import docker
import docker.errors
import urllib3.exceptions

from dockyard_common import DockyardError, PermanentError, TransientError, get_logger

__all__ = [
    "LABEL_KEY",
    "LABEL_MANIFEST",
    "LABEL_OWNER",
    "LABEL_PORT",
    "ContainerGone",
    "Engine",
    "EngineError",
    "EngineRefused",
    "EngineUnavailable",
    "Running",
    "key_hash",
]

log = get_logger(__name__)

LABEL_OWNER = "dockyard.managed-by"
LABEL_KEY = "dockyard.workload"
LABEL_MANIFEST = "dockyard.manifest"
LABEL_PORT = "dockyard.port"

_T = TypeVar("_T")


class EngineError(DockyardError):
    """What the engine seam raises instead of the SDK's exceptions."""


class EngineUnavailable(EngineError, TransientError):
    """No container engine answers where the settings say it is, or it stopped answering."""


class EngineRefused(EngineError, PermanentError):
    """The engine answered a request with an error; the message carries its explanation."""


class ContainerGone(EngineRefused):
    """The container was removed (a replica being replaced, say)."""


# The SDK's errors about the connection itself: requests' errors are OSErrors, and a stream
# read after the engine went away raises urllib3's own.
_UNANSWERED = (docker.errors.DockerException, OSError, urllib3.exceptions.HTTPError)


@contextlib.contextmanager
def _translated(url: str, doing: str) -> Iterator[None]:
    """The one place the docker SDK's exceptions become this module's errors."""
    try:
        yield
    except docker.errors.APIError as exc:  # an answer (before the OSError it also is)
        raise EngineRefused(
            f"the container engine at {url} could not {doing}: {exc.explanation or exc}"
        ) from exc
    except _UNANSWERED as exc:
        raise EngineUnavailable(
            f"the container engine at {url} did not answer ({doing}): {exc}"
        ) from exc


@dataclass(frozen=True)
class Running:
    """A container of ours the engine reports: its id, labels, state and published port."""

    id: str
    labels: dict[str, str]
    running: bool
    host_port: int | None
    device_requests: int = 0
    """The device requests the engine kept (an engine may drop them without a word)."""
    pid: int | None = None
    """Its first process as the engine's machine numbers it (0 or None once stopped)."""


def key_hash(key: str) -> str:
    """A short, name-safe stand-in for a workload key (keys hold ``/``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Engine:
    """The engine at ``url``, seen through the calls the container driver makes.

    Methods block: run them with :meth:`call`. Each raises an :class:`EngineError`, never
    one of the SDK's exceptions.
    """

    def __init__(self, url: str, owner: str) -> None:
        self.url = url
        self.owner = owner
        self._client: Any = None
        self._connecting = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="container-engine")
        self._events: Any = None
        self._watcher: threading.Thread | None = None

    async def call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a blocking call on the engine's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(function, *args, **kwargs))

    @property
    def _sdk(self) -> Any:
        """The SDK client (connected by :meth:`connect`)."""
        if self._client is None:
            raise EngineUnavailable(f"not connected to the container engine at {self.url}")
        return self._client

    def connect(self) -> None:
        """Connect and ping once; :class:`EngineUnavailable` with the reason if not."""
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
        except _UNANSWERED as exc:
            raise EngineUnavailable(
                f"no container engine answers at {self.url}: {exc}; set DOCKER_HOST "
                "(or DOCKYARD_DOCKER_HOST) to a Docker-compatible engine's API"
            ) from exc
        return client

    def watch_exits(self, on_exit: Callable[[str, int], None]) -> None:
        """Call ``on_exit(container id, exit code)`` (from a thread) whenever one of ours dies."""
        with self._connecting, _translated(self.url, "stream container events"):
            if self._watcher is None:
                self._watcher = self._watch(on_exit)

    def _watch(self, on_exit: Callable[[str, int], None]) -> threading.Thread:
        # podman's Docker API ignores an "event" filter combined with others: filter here.
        self._events = self._sdk.events(
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
            except _UNANSWERED as exc:  # the engine went away; the status poll takes over
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
        with _translated(self.url, f"start a container of {image}"):
            container = self._sdk.containers.create(
                image,
                command=config.get("Cmd"),
                working_dir=config.get("WorkingDir") or None,
                environment=env,
                name=name,
                labels={LABEL_OWNER: self.owner, LABEL_PORT: str(container_port), **labels},
                ports={f"{container_port}/tcp": (address, None)},
                # An init as PID 1 passes SIGTERM on: a server that sets no handler (PID 1
                # ignores it by default) would otherwise sit out the grace period on a stop.
                init=True,
                detach=True,
                **limits,
            )
            container.start()
        return self.inspect(container.id)

    def inspect(self, container_id: str) -> Running:
        """What the engine says of one container now; :class:`ContainerGone` if none."""
        return self._running(self._container(container_id))

    def _container(self, container_id: str) -> Any:
        with _translated(self.url, f"find container {container_id[:12]}"):
            try:
                return self._sdk.containers.get(container_id)
            except docker.errors.NotFound as exc:
                raise ContainerGone(f"container {container_id[:12]} no longer exists") from exc

    @staticmethod
    def _running(container: Any) -> Running:
        container_port = container.labels.get(LABEL_PORT, "")
        bindings = (container.ports or {}).get(f"{container_port}/tcp") or []
        port = int(bindings[0]["HostPort"]) if bindings and bindings[0].get("HostPort") else None
        attrs = container.attrs or {}
        kept = (attrs.get("HostConfig") or {}).get("DeviceRequests") or []
        pid = (attrs.get("State") or {}).get("Pid") or None
        return Running(
            container.id,
            dict(container.labels),
            container.status == "running",
            port,
            len(kept),
            int(pid) if pid else None,
        )

    def exit_code(self, container_id: str) -> int | None:
        """The exit code of a stopped container, None while it runs; :class:`ContainerGone`
        when it no longer exists."""
        container = self._container(container_id)
        if container.status in ("running", "created", "restarting"):
            return None
        return int(container.attrs.get("State", {}).get("ExitCode", -1))

    def log_lines(self, container_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines a container printed (stdout and stderr), oldest first;
        :class:`ContainerGone` when it no longer exists."""
        container = self._container(container_id)
        with _translated(self.url, f"read the log of container {container_id[:12]}"):
            try:
                output = container.logs(tail=lines)
            except docker.errors.NotFound as exc:
                raise ContainerGone(f"container {container_id[:12]} no longer exists") from exc
        return bytes(output).decode("utf-8", errors="replace").splitlines()

    def log_tail(self, container_id: str, lines: int) -> str:
        """The last lines a container printed, as one text ("" when it no longer exists)."""
        try:
            return "\n".join(self.log_lines(container_id, lines)).strip()
        except ContainerGone:
            return ""

    def remove(self, container_id: str, grace_s: float) -> None:
        """Stop (SIGTERM, then SIGKILL after ``grace_s``) and remove a container; gone is fine."""
        with _translated(self.url, f"remove container {container_id[:12]}"):
            try:
                container = self._sdk.containers.get(container_id)
                if container.status == "running":
                    container.stop(timeout=int(grace_s))
                container.remove(force=True)
            except docker.errors.NotFound:
                return

    def remove_image(self, reference: str) -> None:
        """Untag an image we made; one still in use (by anyone) or already gone is left."""
        with _translated(self.url, f"remove image {reference}"):
            try:
                self._sdk.images.remove(reference)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                log.info(
                    "container.image.kept", image=reference, reason=str(exc.explanation or exc)
                )

    def has_image(self, reference: str) -> bool:
        """Whether the engine holds the image ``reference``."""
        with _translated(self.url, f"look up image {reference}"):
            try:
                self._sdk.images.get(reference)
            except docker.errors.ImageNotFound:
                return False
        return True

    def pull(self, reference: str) -> str | None:
        """Have the engine pull ``reference``; None when done, else the engine's reason.

        The SDK's ``images.pull`` drops the error the engine streams and then fails to find
        the image, so the stream is read here.
        """
        repository, _, digest = reference.partition("@")
        with _translated(self.url, f"pull {reference}"):
            try:
                stream = self._sdk.api.pull(
                    repository, tag=digest or None, stream=True, decode=True
                )
                for line in stream:
                    if "error" in line:
                        return str(line["error"])
            except docker.errors.APIError as exc:
                return str(exc.explanation or exc)
        return None

    def load_image(self, archive: IO[bytes], tag: str) -> None:
        """Load a ``docker save`` archive holding the image ``tag``."""
        with _translated(self.url, f"load {tag}"):
            self._sdk.images.load(archive)

    def build_image(self, context: IO[bytes], tag: str) -> None:
        """Build a tar build context (its ``Dockerfile`` at the top) as the image ``tag``."""
        with _translated(self.url, f"build {tag}"):
            try:
                self._sdk.images.build(
                    fileobj=context, custom_context=True, tag=tag, rm=True, pull=False
                )
            except docker.errors.BuildError as exc:  # a step failed: the engine's answer
                raise EngineRefused(
                    f"the container engine at {self.url} could not build {tag}: {exc}"
                ) from exc

    def ours(self) -> list[Running]:
        """Every container this installation labelled, running or not."""
        with _translated(self.url, "list containers"):
            found = self._sdk.containers.list(
                all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}
            )
            return [self._running(container) for container in found]

    def close(self) -> None:
        """Stop the events stream and the thread pool, and disconnect."""
        with _translated(self.url, "disconnect"):
            if self._events is not None:
                self._events.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._client is not None:
                self._client.close()
                self._client = None
