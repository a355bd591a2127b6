"""What each target should run, and what a full pass removes: pure decisions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field

from dockyard_common.models import (
    EndpointSpec,
    EndpointState,
    Target,
    Version,
    VersionStatus,
    WorkloadState,
)
from dockyard_common.subjects import version_key

__all__ = [
    "RUNNABLE",
    "RecordedVersion",
    "Workload",
    "desired_workloads",
    "endpoint_prefix",
    "workloads_to_keep",
    "workloads_to_remove",
]

RUNNABLE = frozenset(
    {VersionStatus.BUILT, VersionStatus.DEPLOYING, VersionStatus.READY, VersionStatus.FAILED}
)
"""Statuses whose workloads should run (a version failed in rollout keeps what runs)."""


@dataclass(frozen=True)
class Workload:
    """One endpoint of one version on one target: the unit the drivers apply."""

    version: Version
    endpoint: EndpointSpec
    target: Target
    manifest_digest: str

    @property
    def key(self) -> str:
        """Stable identity: ``<version key>/<endpoint>/<target>``."""
        v = self.version
        version = version_key(v.owner, v.project, v.deployment, v.name)
        return f"{version}/{self.endpoint.name}/{self.target.name}"

    def observed(
        self, state: WorkloadState, upstreams: Sequence[str] = (), reason: str | None = None
    ) -> EndpointState:
        """The report of this workload being in ``state`` (what every driver sends)."""
        v = self.version
        return EndpointState(
            owner=v.owner,
            project=v.project,
            deployment=v.deployment,
            version=v.name,
            endpoint=self.endpoint.name,
            target=self.target.name,
            region=self.target.region,
            state=state,
            upstreams=list(upstreams),
            reason=reason,
        )


def endpoint_prefix(version: Version, endpoint: str) -> str:
    """The URL prefix the router strips before the request reaches the endpoint."""
    return f"/{version.owner}/{version.project}/{version.deployment}/{version.name}/{endpoint}"


def desired_workloads(
    version: Version, targets: dict[str, Target]
) -> tuple[list[Workload], list[str]]:
    """The workloads ``version`` needs on its targets, and the targets it names that are unknown.

    A version without a built image needs nothing yet.
    """
    if version.image is None:
        return [], []
    workloads: list[Workload] = []
    missing: list[str] = []
    for target_name in version.targets:
        target = targets.get(target_name)
        if target is None:
            missing.append(target_name)
            continue
        for spec in version.endpoints:
            workloads.append(Workload(version, spec, target, version.image.endpoints[spec.name]))
    return workloads, missing


@dataclass(frozen=True)
class RecordedVersion:
    """A version as a full pass found it: its key, its record's status, and the keys of the
    workloads the pass made run for it (those its driver applied without an error)."""

    key: str
    status: VersionStatus
    applied: frozenset[str] = field(default_factory=frozenset)


def workloads_to_keep(versions: Iterable[RecordedVersion], running: Set[str]) -> set[str]:
    """The workload keys a full pass keeps, given every version in the state of record and
    the keys the drivers run (side-effect free).

    - A runnable version keeps the workloads the pass applied for it: one on a target the
      version no longer reaches, or whose apply failed, goes.
    - Any other version keeps nothing: pending or building (the scheduler runs only what
      the record holds as built, so nothing of it can be wanted yet), stopping, stopped, or
      deleted (absent from ``versions``).
    """
    keep: set[str] = set()
    for version in versions:
        if version.status in RUNNABLE:
            keep |= version.applied
    return keep


def workloads_to_remove(versions: Iterable[RecordedVersion], running: Set[str]) -> list[str]:
    """The running workloads a full pass removes, in the order it removes them: those
    :func:`workloads_to_keep` does not keep (side-effect free)."""
    return sorted(running - workloads_to_keep(versions, running))
