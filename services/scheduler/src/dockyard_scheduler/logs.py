"""Answering the API's requests for endpoint logs (NATS request/reply, one subject per target).

The scheduler owns the logs of what it runs (a local target's captured output, a container's
output, a cluster's pod logs), so it answers for every target whose kind it drives. A target
that cannot be read, or not within the deadline, gets an ``error`` with the reason: one slow
or failing cluster never holds up, or fails, the answer for another target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from dockyard_common import DockyardError, Target, get_logger
from dockyard_common.logs import LogsReply, LogsRequest
from dockyard_common.subjects import LOGS_SUBJECT_PREFIX, version_key
from dockyard_scheduler.drivers import Drivers, LogSource

__all__ = ["LogsServer", "answer_logs", "serve_logs"]

log = get_logger(__name__)

TargetLookup = Callable[[], Awaitable[dict[str, Target]]]


async def answer_logs(
    request: LogsRequest, targets: dict[str, Target], drivers: Drivers, *, within_s: float
) -> LogsReply:
    """The reply to one request: the workload's replicas' last lines, or why there are none."""
    target = targets.get(request.target)
    if target is None:
        return LogsReply(error=f"target {request.target!r} is not registered")
    driver = drivers.for_kind(target.kind)
    if not isinstance(driver, LogSource):
        return LogsReply(error=f"this scheduler reads no logs of {target.kind.value} targets")
    version = version_key(request.owner, request.project, request.deployment, request.version)
    key = f"{version}/{request.endpoint}/{request.target}"
    try:
        replicas = await asyncio.wait_for(driver.logs(key, request.tail), within_s)
    except TimeoutError:
        log.warning("logs.read.slow", key=key, within_s=within_s)
        return LogsReply(error=f"target {request.target!r} gave no logs within {within_s:g} s")
    except DockyardError as exc:
        log.warning("logs.read.failed", key=key, error=str(exc))
        return LogsReply(error=f"cannot read logs on {request.target!r}: {exc}")
    if not replicas:
        return LogsReply(
            error=f"endpoint {request.endpoint!r} of {request.version!r} has not run on "
            f"{request.target!r}"
        )
    return LogsReply(replicas=replicas)


class LogsServer:
    """The logs subscription and the requests it is answering (each its own task, so that a
    slow target does not queue the others behind it)."""

    def __init__(self, drivers: Drivers, targets: TargetLookup, within_s: float) -> None:
        self._drivers = drivers
        self._targets = targets
        self._within_s = within_s
        self._answering: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    async def start(self, nc: NatsClient) -> None:
        """Subscribe to every target's logs subject (a queue group: one scheduler answers)."""
        subject = f"{LOGS_SUBJECT_PREFIX}.*"
        self._subscription = await nc.subscribe(subject, queue="scheduler", cb=self._received)
        log.info("logs.serving", subject=subject)

    async def _received(self, message: Msg) -> None:
        task = asyncio.create_task(self._answer(message), name=f"logs {message.subject}")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, message: Msg) -> None:
        try:
            request = LogsRequest.model_validate_json(message.data)
        except ValidationError as exc:
            reply = LogsReply(error=f"unreadable logs request: {exc.error_count()} errors")
        else:
            try:
                reply = await answer_logs(
                    request, await self._targets(), self._drivers, within_s=self._within_s
                )
            except Exception as exc:  # the asker must hear why rather than wait out its timeout
                log.exception("logs.answer.failed", target=request.target)
                reply = LogsReply(error=f"the scheduler failed to read logs: {exc!r}")
        await message.respond(reply.model_dump_json().encode())

    async def close(self) -> None:
        """Stop answering: unsubscribe and cancel the answers in progress."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)


async def serve_logs(
    nc: NatsClient, drivers: Drivers, targets: TargetLookup, *, within_s: float
) -> LogsServer:
    """Answer logs requests until the returned server is closed."""
    server = LogsServer(drivers, targets, within_s)
    await server.start(nc)
    return server
