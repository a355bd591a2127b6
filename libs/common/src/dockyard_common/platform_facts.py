"""Facts about the platform itself rather than a user's resources: a service restarted, a
region drained.

They are published on the event stream under ``dockyard.platform.<...>`` (see
:func:`dockyard_common.subjects.platform_event_subject`), not under an owner's subject: an
operator follows them with one filter. Pure data, no I/O.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dockyard_common.models import utcnow
from dockyard_common.names import TargetName

__all__ = ["Region", "ServiceRestart"]


class ServiceRestart(BaseModel):
    """A process of the platform ended on its own and its supervisor started it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance: str = Field(description="The platform instance whose supervisor restarted it.")
    host: str = Field(description="The machine it runs on.")
    service: str = Field(description="api, builder, scheduler, router, webhooks, nats, redis.")
    exited_pid: int
    pid: int = Field(description="The new process.")
    exit_code: int | None = Field(
        default=None, description="The code it exited with; null when a signal ended it."
    )
    signal: str | None = Field(default=None, description="The signal that ended it (SIGKILL).")
    ran_s: float = Field(ge=0, description="How long the process that ended had run.")
    restarts: int = Field(ge=1, description="Restarts of this service since the platform began.")
    at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        """The resource key of the restart's events: the instance and service."""
        return f"{self.instance}.{self.service}"


class Region(BaseModel):
    """An operator's state of a region, kept in the state of record (``dockyard_regions``):
    a drained region gets no requests while another region can serve them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: TargetName
    drained: bool = False
    updated_at: datetime = Field(default_factory=utcnow)
