"""Resolving the objects a project-scoped route acts on: authorised first, then found."""

from __future__ import annotations

from dockyard_api.accounts import Principal, Project, Role
from dockyard_api.auth import authorize
from dockyard_api.context import ApiContext
from dockyard_api.problems import Problem
from dockyard_common import Deployment, Stored
from dockyard_common.subjects import deployment_key, project_key

__all__ = ["deployment_in_scope", "project_in_scope"]


async def project_in_scope(
    context: ApiContext, caller: Principal, owner: str, project: str, role: Role
) -> Project:
    """The project, if the caller may act on it with ``role``; else 404 or 403."""
    missing = f"project {owner}/{project} does not exist"
    authorize(caller, owner, role, missing)
    stored = await context.projects.get(project_key(owner, project))
    if stored is None:
        raise Problem(404, "not-found", f"{missing}; PUT /v1/projects/{owner}/{project} first")
    return stored.value


async def deployment_in_scope(
    context: ApiContext, caller: Principal, owner: str, project: str, deployment: str, role: Role
) -> Stored[Deployment]:
    """The deployment and its revision, if the caller may act on it with ``role``."""
    missing = f"deployment {owner}/{project}/{deployment} does not exist"
    authorize(caller, owner, role, missing)
    stored = await context.deployments.get(deployment_key(owner, project, deployment))
    if stored is None:
        raise Problem(404, "not-found", missing)
    return stored
