"""The endpoint-logs contract between the API and the schedulers (NATS request/reply).

The API sends a :class:`LogsRequest` to :func:`dockyard_common.subjects.logs_subject` of a
target; the scheduler that runs the target answers with a :class:`LogsReply`: the last
lines each replica wrote. Pure data, no I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dockyard_common.names import (
    DeploymentName,
    EndpointName,
    OwnerName,
    ProjectName,
    TargetName,
    VersionName,
)

__all__ = ["MAX_LOG_LINES", "LogsReply", "LogsRequest", "ReplicaLogs"]

MAX_LOG_LINES = 1000
"""The most lines one request may ask of each replica."""


class LogsRequest(BaseModel):
    """Which endpoint's logs, on which target, and how many lines of each replica."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    version: VersionName
    endpoint: EndpointName
    target: TargetName
    tail: int = Field(default=100, ge=1, le=MAX_LOG_LINES)


class ReplicaLogs(BaseModel):
    """The last lines one replica wrote (stdout and stderr together), oldest first."""

    model_config = ConfigDict(frozen=True)

    replica: int = Field(ge=0)
    lines: list[str]
    name: str | None = None
    """The pod or container the lines come from, where the target has such a name."""
    error: str | None = None
    """Why this replica's lines could not be read (a pod still waiting to start, say)."""


class LogsReply(BaseModel):
    """A scheduler's answer: every replica's lines, or why it has none to give."""

    model_config = ConfigDict(frozen=True)

    replicas: list[ReplicaLogs] = Field(default_factory=list)
    error: str | None = None
