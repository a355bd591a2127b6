"""An endpoint's recent log lines, per target (:mod:`dockyard_api.endpoint_logs` asks the
schedulers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from dockyard_api.auth import Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.endpoint_logs import EndpointLogs, TargetLogs, gather_endpoint_logs
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.scopes import existing_deployment
from dockyard_common import EndpointName, TargetName
from dockyard_common.logs import MAX_LOG_LINES
from dockyard_common.subjects import version_key

__all__ = ["EndpointLogs", "TargetLogs", "router"]

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/versions",
    tags=["versions"],
)


@router.get("/{version}/endpoints/{endpoint}/logs")
async def endpoint_logs(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    endpoint: Annotated[EndpointName, Path(description="Endpoint name.")],
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
    target: Annotated[
        TargetName | None, Query(description="Only this target (default: every target).")
    ] = None,
    tail: Annotated[
        int, Query(ge=1, le=MAX_LOG_LINES, description="Lines per replica, newest last.")
    ] = 100,
) -> EndpointLogs:
    """The last ``tail`` lines each replica of the endpoint wrote, per target."""
    await existing_deployment(context, owner, project, deployment)
    stored = await context.versions.get(version_key(owner, project, deployment, version))
    if stored is None:
        raise Problem(
            404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
        )
    if endpoint not in {spec.name for spec in stored.value.endpoints}:
        raise Problem(404, "not-found", f"version {version!r} has no endpoint {endpoint!r}")
    targets = stored.value.targets
    if target is not None:
        if target not in targets:
            raise Problem(404, "not-found", f"version {version!r} does not run on {target!r}")
        targets = [target]
    return await gather_endpoint_logs(context, stored.value, endpoint, targets, tail)
