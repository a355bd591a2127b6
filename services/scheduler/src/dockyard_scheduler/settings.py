"""The scheduler's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import AliasChoices, Field

from dockyard_common import CommonSettings

__all__ = ["SchedulerSettings"]

_DEFAULT_DOCKER_SOCKET = Path("/var/run/docker.sock")


class SchedulerSettings(CommonSettings):
    """How long an endpoint may take to open its port, and how crashes are retried."""

    readiness_timeout_s: float = 30.0
    restart_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    stop_grace_s: float = 5.0
    retry_failed_after_s: float = 30.0
    """A replica that failed to become ready is tried again after this long."""
    docker_host: str | None = Field(
        default=None, validation_alias=AliasChoices("DOCKYARD_DOCKER_HOST", "DOCKER_HOST")
    )
    """The Docker-compatible engine of container targets (``unix:///...`` or ``tcp://...``)."""

    @property
    def runtime_dir(self) -> Path:
        """Unpacked images, replica logs and working state of the local driver."""
        return self.data_dir / "runtime"

    @property
    def container_engine_url(self) -> str | None:
        """The engine container targets run on: ``docker_host``, else Docker's usual socket."""
        if self.docker_host:
            return self.docker_host
        return f"unix://{_DEFAULT_DOCKER_SOCKET}" if _DEFAULT_DOCKER_SOCKET.exists() else None

    @property
    def container_owner(self) -> str:
        """Labels this installation's containers, so that another sharing the engine keeps its own.

        Derived from the data directory: a restarted scheduler finds its predecessor's containers.
        """
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()
        return f"dockyard-{digest[:12]}"
