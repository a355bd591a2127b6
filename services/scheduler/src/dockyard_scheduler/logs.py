"""Answering the API's requests for endpoint logs (NATS request/reply, one subject per target).

The scheduler owns the logs of what it runs (on a local target, the replicas' captured
output), so it answers for every target whose kind it drives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from dockyard_common import Target, get_logger
from dockyard_common.logs import LogsReply, LogsRequest
from dockyard_common.subjects import LOGS_SUBJECT_PREFIX, version_key
from dockyard_scheduler.drivers import Drivers, LogSource

__all__ = ["answer_logs", "serve_logs"]

log = get_logger(__name__)

TargetLookup = Callable[[], Awaitable[dict[str, Target]]]


def answer_logs(request: LogsRequest, targets: dict[str, Target], drivers: Drivers) -> LogsReply:
    """The reply to one request: the workload's replicas' last lines, or why there are none."""
    target = targets.get(request.target)
    if target is None:
        return LogsReply(error=f"target {request.target!r} is not registered")
    driver = drivers.for_kind(target.kind)
    if not isinstance(driver, LogSource):
        return LogsReply(error=f"this scheduler reads no logs of {target.kind.value} targets")
    version = version_key(request.owner, request.project, request.deployment, request.version)
    replicas = driver.logs(f"{version}/{request.endpoint}/{request.target}", request.tail)
    if not replicas:
        return LogsReply(
            error=f"endpoint {request.endpoint!r} of {request.version!r} has not run on "
            f"{request.target!r}"
        )
    return LogsReply(replicas=replicas)


async def serve_logs(nc: NatsClient, drivers: Drivers, targets: TargetLookup) -> Subscription:
    """Subscribe to every target's logs subject (a queue group: one scheduler answers)."""

    async def handle(message: Msg) -> None:
        try:
            request = LogsRequest.model_validate_json(message.data)
        except ValidationError as exc:
            reply = LogsReply(error=f"unreadable logs request: {exc.error_count()} errors")
        else:
            reply = answer_logs(request, await targets(), drivers)
        await message.respond(reply.model_dump_json().encode())

    subscription = await nc.subscribe(f"{LOGS_SUBJECT_PREFIX}.*", queue="scheduler", cb=handle)
    log.info("logs.serving", subject=f"{LOGS_SUBJECT_PREFIX}.*")
    return subscription
