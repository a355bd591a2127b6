"""Starting a stopped version again: ``POST .../versions/{version}/start``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from dockyard_api.auth import Deployer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.preconditions import etag
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.starting import request_start
from dockyard_common import Version

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/versions",
    tags=["versions"],
)


@router.post(
    "/{version}/start",
    status_code=202,
    responses={200: {"model": Version, "description": "Not stopped: nothing to start."}},
)
async def start_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    response: Response,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Version:
    """Run a stopped (or stopping) version again on every target, from its built image.

    202: it is ``built`` again and announced as ``version.starting``; the scheduler starts
    its endpoints and it becomes ``ready`` as after a deploy, when an alias may point at it.
    200: it was not stopped, and is answered as it stands. 409: it was never built."""
    start = await request_start(context, owner, project, deployment, version)
    if not start.started:
        response.status_code = 200
    response.headers["ETag"] = etag(start.revision)
    return start.version
