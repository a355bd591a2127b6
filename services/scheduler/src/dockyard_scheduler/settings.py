"""The scheduler's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

from pathlib import Path

from dockyard_common import CommonSettings

__all__ = ["SchedulerSettings"]


class SchedulerSettings(CommonSettings):
    """How long an endpoint may take to open its port, and how crashes are retried."""

    readiness_timeout_s: float = 30.0
    restart_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    stop_grace_s: float = 5.0
    retry_failed_after_s: float = 30.0
    """A replica that failed to become ready is tried again after this long."""
    keep_replicas_on_exit: bool = False
    """Leave replicas serving when the scheduler stops; the next scheduler adopts them."""

    @property
    def runtime_dir(self) -> Path:
        """Unpacked images, replica logs and working state of the local driver."""
        return self.data_dir / "runtime"
