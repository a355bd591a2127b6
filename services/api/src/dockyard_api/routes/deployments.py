"""Deployments: a named group of versioned endpoints and the targets it is placed on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from dockyard_api.auth import AdminAuth
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import DeploymentIn
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath
from dockyard_common import Deployment
from dockyard_common.subjects import deployment_key

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments",
    tags=["deployments"],
    dependencies=[AdminAuth],
)


@router.put("/{deployment}", status_code=201)
async def put_deployment(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    body: DeploymentIn,
    response: Response,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Deployment:
    """Create a deployment or change its targets; 201 when new, 200 when changed."""
    unknown = [name for name in body.targets if await context.targets.get(name) is None]
    if unknown:
        known = [name async for name, _ in context.targets.items()]
        raise Problem(
            422,
            "unknown-target",
            f"no target named {', '.join(map(repr, unknown))}; known targets: "
            f"{', '.join(map(repr, known)) or 'none (an admin registers them)'}",
        )
    key = deployment_key(owner, project, deployment)
    current = await context.deployments.get(key)
    if current is None:
        value = Deployment(owner=owner, project=project, name=deployment, targets=body.targets)
        revision = await context.deployments.create(key, value)
    else:
        value = current.value.model_copy(update={"targets": body.targets})
        revision = await context.deployments.update(key, value, current.revision)
        response.status_code = 200
    response.headers["ETag"] = f'"{revision}"'
    return value


@router.get("/{deployment}")
async def get_deployment(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    response: Response,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Deployment:
    """One deployment."""
    stored = await context.deployments.get(deployment_key(owner, project, deployment))
    if stored is None:
        raise Problem(404, "not-found", f"deployment {owner}/{project}/{deployment} does not exist")
    response.headers["ETag"] = f'"{stored.revision}"'
    return stored.value
