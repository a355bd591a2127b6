"""Finding the objects a project-scoped route acts on (the caller is authorised already)."""

from __future__ import annotations

from dockyard_api.accounts import Project
from dockyard_api.context import ApiContext
from dockyard_api.problems import Problem
from dockyard_common import Deployment, Stored
from dockyard_common.subjects import deployment_key, project_key

__all__ = ["existing_deployment", "existing_project"]


async def existing_project(context: ApiContext, owner: str, project: str) -> Project:
    """The project; 404 telling how to create it when it does not exist."""
    stored = await context.projects.get(project_key(owner, project))
    if stored is None:
        raise Problem(
            404,
            "not-found",
            f"project {owner}/{project} does not exist; PUT /v1/projects/{owner}/{project} first",
        )
    return stored.value


async def existing_deployment(
    context: ApiContext, owner: str, project: str, deployment: str
) -> Stored[Deployment]:
    """The deployment with its revision; 404 when it does not exist."""
    stored = await context.deployments.get(deployment_key(owner, project, deployment))
    if stored is None:
        raise Problem(404, "not-found", f"deployment {owner}/{project}/{deployment} does not exist")
    return stored
