"""Versions: submit one (:mod:`dockyard_api.submission`), read where it stands, list them,
stop one (:mod:`dockyard_api.stopping`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import VersionIn
from dockyard_api.listing import BadCursor, Page, page_after
from dockyard_api.preconditions import etag
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.scopes import existing_deployment
from dockyard_api.stopping import request_stop
from dockyard_api.submission import submit_version
from dockyard_common import Version
from dockyard_common.subjects import version_key

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/versions",
    tags=["versions"],
)


@router.post("", status_code=201)
async def create_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    body: VersionIn,
    response: Response,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Version:
    """Submit a version: checked, stored pending, announced as ``version.created``."""
    submitted = await submit_version(context, owner, project, deployment, body)
    response.headers["ETag"] = etag(submitted.revision)
    response.headers["Location"] = (
        f"/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{submitted.version.name}"
    )
    return submitted.version


@router.get("/{version}")
async def get_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    response: Response,
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Version:
    """Where a version stands: overall, per endpoint and per target."""
    await existing_deployment(context, owner, project, deployment)
    stored = await context.versions.get(version_key(owner, project, deployment, version))
    if stored is None:
        raise Problem(
            404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
        )
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.get("")
async def list_versions(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="The 'next' of the previous page.")] = None,
) -> Page[Version]:
    """The deployment's versions, newest first, ``limit`` a page."""
    await existing_deployment(context, owner, project, deployment)
    prefix = version_key(owner, project, deployment, "")
    versions = [stored.value async for _, stored in context.versions.items(prefix)]
    versions.sort(key=_position, reverse=True)
    try:
        return page_after(versions, _position, cursor, limit)
    except BadCursor as exc:
        raise Problem(422, "invalid-input", str(exc)) from None


def _position(version: Version) -> list[str]:
    return [version.created_at.isoformat(), version.name]


@router.delete("/{version}", status_code=202)
async def stop_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
    force: Annotated[bool, Query(description="Stop it even if an alias points to it.")] = False,
) -> Version:
    """Stop a version on every target (202: it is stopping). Refused while an alias uses it."""
    return await request_stop(context, owner, project, deployment, version, force=force)
