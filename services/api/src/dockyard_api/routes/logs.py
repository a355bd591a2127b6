"""An endpoint's recent log lines, per target, asked of the schedulers that run them.

The schedulers own the logs (on a local target, the replicas' captured output); the API
asks each target's scheduler over NATS request/reply, all targets at once, and a target
whose scheduler does not answer in time gets an ``error`` entry instead of failing the call.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import nats.errors
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ValidationError

from dockyard_api.auth import Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.scopes import existing_deployment
from dockyard_common import EndpointName, TargetName, get_logger
from dockyard_common.logs import MAX_LOG_LINES, LogsReply, LogsRequest, ReplicaLogs
from dockyard_common.subjects import logs_subject, version_key

__all__ = ["EndpointLogs", "TargetLogs", "router"]

log = get_logger(__name__)

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/versions",
    tags=["versions"],
)


class TargetLogs(BaseModel):
    """One target's replicas and their last lines, or why the target gave none."""

    target: str
    region: str
    replicas: list[ReplicaLogs]
    error: str | None


class EndpointLogs(BaseModel):
    """``GET .../endpoints/{endpoint}/logs``: per target of the version."""

    targets: list[TargetLogs]


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
    request = {
        "owner": owner,
        "project": project,
        "deployment": deployment,
        "version": version,
        "endpoint": endpoint,
        "tail": tail,
    }
    replies = await asyncio.gather(
        *(_ask(context, LogsRequest(target=name, **request)) for name in targets)
    )
    entries = []
    for name, reply in zip(targets, replies, strict=True):
        registered = await context.targets.get(name)
        region = registered.value.region if registered is not None else name
        entries.append(
            TargetLogs(target=name, region=region, replicas=reply.replicas, error=reply.error)
        )
    return EndpointLogs(targets=entries)


async def _ask(context: ApiContext, request: LogsRequest) -> LogsReply:
    """One target's reply; a scheduler that does not answer becomes an error entry."""
    timeout = context.settings.logs_timeout_s
    try:
        message = await context.nats.request(
            logs_subject(request.target), request.model_dump_json().encode(), timeout=timeout
        )
        return LogsReply.model_validate_json(message.data)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, TimeoutError):
        log.warning("logs.target.silent", target=request.target)
        return LogsReply(
            error=f"the scheduler of {request.target!r} did not answer in {timeout:g} s"
        )
    except ValidationError:
        return LogsReply(error=f"the scheduler of {request.target!r} sent an unreadable reply")
