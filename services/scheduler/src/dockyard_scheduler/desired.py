"""What each target should run: pure decisions over versions and targets, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dockyard_common.models import EndpointSpec, EndpointState, Target, Version, WorkloadState
from dockyard_common.subjects import version_key

__all__ = ["Workload", "desired_workloads", "endpoint_prefix"]


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
