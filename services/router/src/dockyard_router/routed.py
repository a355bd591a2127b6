"""What routing reads of the state of record: a version's endpoint states, an alias's
targets, a region's drain. Pure, no I/O.

Every router process parses every write of the versions, aliases and regions buckets, so
these models hold only what the tables use: a version's code, image and specs, an alias's
history are skipped unread (fields a model does not name are ignored, which also lets a
router read records a later release writes). The Redis mirror keeps them in this form too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dockyard_common.models import AliasTarget, VersionStatus, WorkloadState
from dockyard_common.subjects import alias_table_key

__all__ = ["RoutedAlias", "RoutedEndpoint", "RoutedRegion", "RoutedVersion"]

_READ = ConfigDict(frozen=True, extra="ignore")


class RoutedEndpoint(BaseModel):
    """One endpoint of a version on one target, as the record last holds it."""

    model_config = _READ

    endpoint: str
    target: str
    region: str
    state: WorkloadState
    upstreams: list[str] = Field(default_factory=list)


class RoutedVersion(BaseModel):
    """A version: where its endpoints run, and whether it was stopped."""

    model_config = _READ

    owner: str
    project: str
    deployment: str
    name: str
    status: VersionStatus
    endpoint_states: list[RoutedEndpoint] = Field(default_factory=list)

    @property
    def deployment_path(self) -> str:
        """``owner/project/deployment``."""
        return f"{self.owner}/{self.project}/{self.deployment}"

    @property
    def table_key(self) -> str:
        """``owner/project/deployment/version``: the version's key in the tables."""
        return f"{self.deployment_path}/{self.name}"


class RoutedAlias(BaseModel):
    """An alias: the version (or weighted versions) it points to, per region."""

    model_config = _READ

    owner: str
    project: str
    deployment: str
    name: str
    target: AliasTarget
    regions: dict[str, AliasTarget] = Field(default_factory=dict)

    def target_in(self, region: str) -> AliasTarget:
        """Where the alias points for requests served from ``region``."""
        return self.regions.get(region, self.target)

    @property
    def table_key(self) -> str:
        """``owner/project/deployment/alias``: the alias's key in the tables and heartbeats."""
        return alias_table_key(self.owner, self.project, self.deployment, self.name)


class RoutedRegion(BaseModel):
    """A region an operator drained (or undrained)."""

    model_config = _READ

    name: str
    drained: bool = False
