"""Projects: ``owner/project``, holding deployments and blobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard_api.accounts import Project
from dockyard_api.auth import Deployer, OwnerAdmin, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.preconditions import IfMatch, check_if_match, etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import OwnerPath, ProjectPath
from dockyard_common.subjects import deployment_key, project_key

__all__ = ["router"]

router = APIRouter(prefix="/v1/projects", tags=["projects"])

Context = Annotated[ApiContext, Depends(get_context)]


class ProjectIn(BaseModel):
    """``PUT /v1/projects/{owner}/{project}``."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=1000)


def _missing(owner: str, project: str) -> str:
    return f"project {owner}/{project} does not exist"


@router.put(
    "/{owner}/{project}",
    status_code=201,
    responses={200: {"model": Project, "description": "Changed"}},
)
async def put_project(
    owner: OwnerPath,
    project: ProjectPath,
    body: ProjectIn,
    response: Response,
    caller: Deployer,
    context: Context,
    if_match: IfMatch = None,
) -> Project:
    """Create a project or change its description; 201 when new, 200 when changed."""
    if await context.owners.get(owner) is None:
        raise Problem(404, "not-found", f"owner {owner!r} does not exist; POST /v1/owners first")
    key = project_key(owner, project)
    current = await context.projects.get(key)
    check_if_match(if_match, current.revision if current else None)
    if current is None:
        value = Project(owner=owner, name=project, description=body.description)
        revision = await context.projects.create(key, value)
    else:
        value = current.value.model_copy(update={"description": body.description})
        revision = await context.projects.update(key, value, current.revision)
        response.status_code = 200
    response.headers["ETag"] = etag(revision)
    return value


@router.get("/{owner}")
async def list_projects(owner: OwnerPath, caller: Viewer, context: Context) -> Page[Project]:
    """The owner's projects."""
    return Page(items=[s.value async for _, s in context.projects.items(f"{owner}.")])


@router.get("/{owner}/{project}")
async def get_project(
    owner: OwnerPath, project: ProjectPath, response: Response, caller: Viewer, context: Context
) -> Project:
    """One project."""
    stored = await context.projects.get(project_key(owner, project))
    if stored is None:
        raise Problem(404, "not-found", _missing(owner, project))
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.delete("/{owner}/{project}", status_code=204)
async def delete_project(
    owner: OwnerPath, project: ProjectPath, caller: OwnerAdmin, context: Context
) -> Response:
    """Delete an empty project; 409 while it still has deployments."""
    key = project_key(owner, project)
    if await context.projects.get(key) is None:
        raise Problem(404, "not-found", _missing(owner, project))
    prefix = deployment_key(owner, project, "")
    remaining = [s.value.name async for _, s in context.deployments.items(prefix)]
    if remaining:
        raise Problem(
            409,
            "not-empty",
            f"project {owner}/{project} still has deployments: {', '.join(remaining)}",
        )
    await context.projects.delete(key)
    return Response(status_code=204)
