"""An endpoint's recent log lines, per target, asked of the schedulers that run them.

The schedulers own the logs (on a local target, the replicas' captured output); the API
asks each target's scheduler over NATS request/reply, all targets at once, and a target
whose scheduler does not answer in time gets an ``error`` entry instead of failing the call.
Used by the logs route and the console's version page.
"""

from __future__ import annotations

import asyncio

import nats.errors
from pydantic import BaseModel, ValidationError

from dockyard_api.context import ApiContext
from dockyard_common import Version, get_logger
from dockyard_common.logs import LogsReply, LogsRequest, ReplicaLogs
from dockyard_common.subjects import logs_subject

__all__ = ["EndpointLogs", "TargetLogs", "gather_endpoint_logs"]

log = get_logger(__name__)


class TargetLogs(BaseModel):
    """One target's replicas and their last lines, or why the target gave none."""

    target: str
    region: str
    replicas: list[ReplicaLogs]
    error: str | None


class EndpointLogs(BaseModel):
    """``GET .../endpoints/{endpoint}/logs``: per target of the version."""

    targets: list[TargetLogs]


async def gather_endpoint_logs(
    context: ApiContext, version: Version, endpoint: str, targets: list[str], tail: int
) -> EndpointLogs:
    """The last ``tail`` lines of each replica of ``endpoint`` on each of ``targets``."""
    request = {
        "owner": version.owner,
        "project": version.project,
        "deployment": version.deployment,
        "version": version.name,
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
