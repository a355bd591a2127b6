"""The records a console page shows, read from the stores once per page."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard_api.accounts import Project
from dockyard_api.context import ApiContext
from dockyard_api.scopes import existing_deployment
from dockyard_common import Alias, Deployment, Target, Version
from dockyard_common.platform_facts import Region
from dockyard_common.subjects import alias_key, deployment_key, version_key

__all__ = [
    "DeploymentSummary",
    "DeploymentView",
    "read_deployment",
    "read_owner",
    "read_regions",
]

SHOWN_VERSIONS = 20


@dataclass(frozen=True)
class DeploymentView:
    """A deployment with its versions (newest first), aliases and targets."""

    deployment: Deployment
    versions: list[Version]
    aliases: list[Alias]
    targets: list[Target]


async def read_deployment(
    context: ApiContext, owner: str, project: str, deployment: str, *, every_version: bool = False
) -> DeploymentView:
    """The deployment's records (404 when it does not exist); the newest versions only,
    unless ``every_version``."""
    stored = await existing_deployment(context, owner, project, deployment)
    versions = [
        s.value
        async for _, s in context.versions.items(version_key(owner, project, deployment, ""))
    ]
    versions.sort(key=lambda v: (v.created_at, v.name), reverse=True)
    aliases = [
        s.value async for _, s in context.aliases.items(alias_key(owner, project, deployment, ""))
    ]
    aliases.sort(key=lambda a: a.name)
    targets = []
    for name in stored.value.targets:
        target = await context.targets.get(name)
        if target is not None:
            targets.append(target.value)
    return DeploymentView(
        deployment=stored.value,
        versions=versions if every_version else versions[:SHOWN_VERSIONS],
        aliases=aliases,
        targets=targets,
    )


@dataclass(frozen=True)
class DeploymentSummary:
    """A deployment's line in the overview: its aliases and how many versions are in each
    status (its health at a glance)."""

    deployment: Deployment
    aliases: list[Alias]
    statuses: dict[str, int]


async def read_owner(
    context: ApiContext, owner: str
) -> list[tuple[Project, list[DeploymentSummary]]]:
    """The owner's projects, each with its deployments, their aliases and versions' health."""
    projects = []
    async for _, stored in context.projects.items(f"{owner}."):
        project = stored.value
        deployments = []
        async for _, deployed in context.deployments.items(deployment_key(owner, project.name, "")):
            name = deployed.value.name
            prefix = alias_key(owner, project.name, name, "")
            aliases = [s.value async for _, s in context.aliases.items(prefix)]
            statuses: dict[str, int] = {}
            async for _, version in context.versions.items(
                version_key(owner, project.name, name, "")
            ):
                status = version.value.status.value
                statuses[status] = statuses.get(status, 0) + 1
            deployments.append(DeploymentSummary(deployed.value, aliases, statuses))
        projects.append((project, deployments))
    return projects


async def read_regions(context: ApiContext) -> tuple[list[Target], dict[str, Region]]:
    """Every target, and the regions an operator has drained or undrained."""
    targets = [s.value async for _, s in context.targets.items()]
    regions = {s.value.name: s.value async for _, s in context.regions.items()}
    return targets, regions
