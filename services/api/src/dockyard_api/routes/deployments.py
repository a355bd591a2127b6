"""Deployments: a named group of versioned endpoints and the targets it is placed on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from dockyard_api.auth import Deployer, OwnerAdmin, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import DeploymentIn
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, check_if_match, etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath
from dockyard_api.scopes import existing_deployment, existing_project
from dockyard_common import Deployment, EventType, VersionStatus
from dockyard_common.subjects import deployment_key, version_key

__all__ = ["router"]

router = APIRouter(prefix="/v1/projects/{owner}/{project}/deployments", tags=["deployments"])

Context = Annotated[ApiContext, Depends(get_context)]

_FINISHED = (VersionStatus.STOPPED, VersionStatus.FAILED)


@router.put(
    "/{deployment}",
    status_code=201,
    responses={200: {"model": Deployment, "description": "Changed"}},
)
async def put_deployment(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    body: DeploymentIn,
    response: Response,
    caller: Deployer,
    context: Context,
    if_match: IfMatch = None,
) -> Deployment:
    """Create a deployment or change its targets; 201 when new, 200 when changed."""
    await existing_project(context, owner, project)
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
    check_if_match(if_match, current.revision if current else None)
    if current is None:
        value = Deployment(owner=owner, project=project, name=deployment, targets=body.targets)
        revision = await context.deployments.create(
            key, value, announce=EventType.DEPLOYMENT_CHANGED
        )
    else:
        value = current.value.model_copy(update={"targets": body.targets})
        revision = await context.deployments.update(
            key, value, current.revision, announce=EventType.DEPLOYMENT_CHANGED
        )
        response.status_code = 200
    response.headers["ETag"] = etag(revision)
    return value


@router.get("")
async def list_deployments(
    owner: OwnerPath, project: ProjectPath, caller: Viewer, context: Context
) -> Page[Deployment]:
    """The project's deployments."""
    await existing_project(context, owner, project)
    prefix = deployment_key(owner, project, "")
    return Page(items=[s.value async for _, s in context.deployments.items(prefix)])


@router.get("/{deployment}")
async def get_deployment(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    response: Response,
    caller: Viewer,
    context: Context,
) -> Deployment:
    """One deployment."""
    stored = await existing_deployment(context, owner, project, deployment)
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.delete("/{deployment}", status_code=204)
async def delete_deployment(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    caller: OwnerAdmin,
    context: Context,
) -> Response:
    """Delete a deployment whose versions are all stopped; 409 names those still running."""
    await existing_deployment(context, owner, project, deployment)
    prefix = version_key(owner, project, deployment, "")
    running = [
        s.value.name
        async for _, s in context.versions.items(prefix)
        if s.value.status not in _FINISHED
    ]
    if running:
        raise Problem(409, "not-empty", f"stop these versions first: {', '.join(running)}")
    await context.deployments.delete(deployment_key(owner, project, deployment))
    return Response(status_code=204)
