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
    keep_replicas_on_exit: bool = False
    """Leave replicas serving when the scheduler stops; the next scheduler adopts them."""
    local_namespaces: bool = True
    """Run each local replica in user, network and mount namespaces of its own, where the
    machine allows it (else, or when False, replicas listen on ``$PORT``)."""

    autoscale_stable_s: float = Field(default=60.0, gt=0)
    """The autoscaler's stable window: the average load over it decides, and a scale-down
    needs all of it to agree (:mod:`dockyard_scheduler.scaling`)."""
    autoscale_panic_s: float = Field(default=6.0, gt=0)
    """The panic window: a burst over it asking for twice the replicas scales up at once."""
    autoscale_every_s: float = Field(default=1.0, gt=0)
    """How often the autoscaler decides (the routers report once a second)."""
    scale_down_drain_s: float = Field(default=2.0, ge=0)
    """How long a replica scaled down stays up once the report without it is published (it
    waits for that through a NATS outage): for the routers to apply it (report → record →
    fact → routers) and the requests under way to end; then it gets ``stop_grace_s``."""

    full_pass_every_s: float = 30.0
    """How often the whole state of record is reconciled (events wake it in between)."""

    kubeconfig: Path | None = None
    """The kubeconfig of Kubernetes targets (a target's ``context`` names its cluster);
    None reads the client's default (``$KUBECONFIG``, ``~/.kube/config``)."""
    kube_rollout_deadline_s: float = 600.0
    """A rollout not available after this long is reported failed with the pod's reason."""
    kube_poll_s: float = 1.0
    """How often rollouts in progress are looked at (one LIST per cluster)."""
    kube_request_timeout_s: float = 10.0
    kube_workers: int = 8
    """Concurrent API calls per cluster (threads: the official client is synchronous)."""
    kube_attempts: int = 6
    """Tries of one API call on 409/429/5xx/timeouts before the workload is reported failed;
    the next reconcile pass tries again."""
    logs_deadline_s: float = 1.5
    """How long a logs request may read a target before it answers with an error instead
    (keep it under the API's ``logs_timeout_s``, 2 s by default)."""
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
