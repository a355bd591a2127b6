"""Starting a stopped version again: ``POST .../versions/{version}/start``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from dockyard_api.auth import Deployer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.preconditions import etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.scopes import existing_deployment
from dockyard_api.starting import NeverBuilt, version_started
from dockyard_common import Conflict, EventType, Version, get_logger, utcnow
from dockyard_common.subjects import version_key

__all__ = ["router"]

log = get_logger(__name__)

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
    await existing_deployment(context, owner, project, deployment)
    key = version_key(owner, project, deployment, version)
    for _ in range(20):
        stored = await context.versions.get(key)
        if stored is None:
            raise Problem(
                404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
            )
        try:
            started = version_started(stored.value, utcnow())
        except NeverBuilt as exc:
            raise Problem(409, "version-not-built", str(exc)) from None
        if started is None:
            response.status_code = 200
            response.headers["ETag"] = etag(stored.revision)
            return stored.value
        try:
            revision = await context.versions.update(
                key, started, stored.revision, announce=EventType.VERSION_STARTING
            )
        except Conflict:
            continue  # a report of its stop landed meanwhile; look again
        log.info(
            "version.start.requested",
            owner=owner,
            project=project,
            deployment=deployment,
            version=version,
            revision=revision,
        )
        response.headers["ETag"] = etag(revision)
        return started
    raise Problem(409, "conflict", f"version {version!r} kept changing; retry")
