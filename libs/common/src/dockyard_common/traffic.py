"""The request metrics feed (what each router process served, a message a second), and the
wake-up a router asks for when a request arrives for an endpoint scaled to zero.

Every router process publishes, once a second and per deployment it served (or holds
requests of), a ``router.traffic.observed`` event whose data is a :class:`DeploymentTraffic`:
per version, endpoint and region, the requests answered in the window, the errors among them
(5xx answers and upstream failures), the requests in flight at its end and on average over
it, and a latency histogram. They go to their own stream (``DOCKYARD_TRAFFIC``, a day
kept) under ``dockyard.traffic.<owner>.<project>.<deployment>``: the scheduler's autoscaler
reads them, and so may any subscriber (the console's traffic charts). Pure data, no I/O.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dockyard_common.models import utcnow
from dockyard_common.names import (
    DeploymentName,
    EndpointName,
    OwnerName,
    ProjectName,
    TargetName,
    VersionName,
)

__all__ = ["LATENCY_BUCKETS_MS", "DeploymentTraffic", "EndpointTraffic", "WakeRequest"]

LATENCY_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
"""Upper bounds of the latency histogram's buckets; one more bucket counts what is slower."""


class EndpointTraffic(BaseModel):
    """One endpoint of one version, served in one region, over one window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: VersionName
    endpoint: EndpointName
    region: TargetName = Field(description="Where the requests were served (its replicas').")
    requests: int = Field(default=0, ge=0, description="Answers given in the window.")
    errors: int = Field(default=0, ge=0, description="5xx answers and upstream failures.")
    in_flight: int = Field(default=0, ge=0, description="Requests under way at the window's end.")
    concurrency: float = Field(
        default=0.0, ge=0, description="Requests in flight on average over the window."
    )
    latency_ms: list[int] = Field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1),
        description="Answers per latency bucket (LATENCY_BUCKETS_MS, then slower).",
    )
    latency_ms_sum: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_count_per_bucket(self) -> EndpointTraffic:
        if len(self.latency_ms) != len(LATENCY_BUCKETS_MS) + 1:
            raise ValueError(f"latency_ms needs {len(LATENCY_BUCKETS_MS) + 1} counts")
        return self


class DeploymentTraffic(BaseModel):
    """What one router process served of one deployment over one window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    router: str = Field(description="The router process: host, pid and worker.")
    region: TargetName = Field(description="The router's own region.")
    window_end: datetime = Field(default_factory=utcnow)
    window_s: float = Field(gt=0)
    endpoints: list[EndpointTraffic]

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where its events are published."""
        return self.owner, self.project, self.deployment


class WakeRequest(BaseModel):
    """A router holds a request for an endpoint scaled to zero (``idle``) and asks the
    scheduler, on :data:`dockyard_common.subjects.AUTOSCALE_WAKE_SUBJECT` (core NATS
    request/reply), to start a replica of it in ``region``; it forwards the request the
    moment the record shows one ready."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    version: VersionName
    endpoint: EndpointName
    region: TargetName
