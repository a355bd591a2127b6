"""Durable JetStream consumers of the event stream, with the retry decision in the error.

A handler receives a parsed :class:`CloudEvent`. Returning acknowledges it; raising
:class:`TransientError` redelivers after its delay; :class:`PermanentError` drops the message
(the handler reports the failure as an event first); any other exception redelivers with
backoff, bounded by ``max_deliver``. Handlers must be idempotent: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from dockyard_common.errors import PermanentError, TransientError
from dockyard_common.events import CloudEvent
from dockyard_common.log import get_logger
from dockyard_common.runtime.lifecycle import in_background
from dockyard_common.subjects import EVENTS_STREAM, event_type_filter
from dockyard_common.subscriptions import ConsumerSpec

__all__ = ["ConsumerSpec", "EventHandler", "keep_alive", "pull_messages", "run_consumer"]

log = get_logger(__name__)

EventHandler = Callable[[CloudEvent, Msg], Awaitable[None]]


async def pull_messages(
    js: JetStreamContext, stream: str, config: ConsumerConfig
) -> AsyncGenerator[Msg, None]:
    """Every message of a durable pull consumer (created or updated here), until cancelled.

    The caller acknowledges. Idle fetches and disconnects are waited out, not raised.
    Messages are fetched one at a time: nats-py's fetch of a batch, once it has to wait,
    holds the first message until the whole batch arrives or the timeout passes (seconds
    of latency), while a fetch of one returns as soon as a message is there.
    """
    durable = str(config.durable_name)
    await js.add_consumer(stream, config=config)
    subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
    log.info("consumer.started", stream=stream, durable=durable)
    try:
        while True:
            try:
                messages = await subscription.fetch(1, timeout=5.0)
            except TimeoutError:
                # Nothing to do (nats-py raises its own or asyncio's TimeoutError here).
                continue
            except nats.errors.ConnectionClosedError:
                # Closed on purpose (connections reconnect forever otherwise): we are done.
                log.info("consumer.stopped", durable=durable)
                return
            except nats.errors.Error as exc:
                # Disconnected or reconnecting: the client reconnects by itself.
                log.warning("consumer.fetch.failed", durable=durable, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                yield message
    finally:
        # A pull subscription left behind makes the connection's drain wait for its timeout.
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


async def run_consumer(js: JetStreamContext, spec: ConsumerSpec, handle: EventHandler) -> None:
    """Create (or update) the durable consumer; feed its events to ``handle`` until cancelled.

    Up to ``spec.concurrency`` events are handled at once, each in a task of its own with the
    same retry decisions; cancelling the consumer cancels the handlers still running, whose
    events are then redelivered.
    """
    config = ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        deliver_policy=DeliverPolicy.ALL,
        filter_subjects=[event_type_filter(t) for t in spec.event_types],
    )
    messages = pull_messages(js, EVENTS_STREAM, config)
    if spec.concurrency == 1:
        async for message in messages:
            await _deliver(spec, message, handle)
        return
    # A slot is taken before a message is fetched: no message waits in this process
    # (unacknowledged, its ack_wait running) for a handler to be free.
    slots = asyncio.Semaphore(spec.concurrency)

    async def deliver(message: Msg) -> None:
        try:
            await _deliver(spec, message, handle)
        except nats.errors.Error as exc:
            # The ack (or nak) did not reach the server: JetStream redelivers after ack_wait.
            # One handler's lost connection must not cancel the others' work.
            log.warning("consumer.ack.failed", durable=spec.durable, error=repr(exc))
        finally:
            slots.release()

    async with contextlib.aclosing(messages), asyncio.TaskGroup() as handlers:
        while True:
            await slots.acquire()
            try:
                message = await anext(messages)
            except StopAsyncIteration:
                return
            handlers.create_task(deliver(message), name=f"{spec.durable} {message.subject}")


async def _deliver(spec: ConsumerSpec, message: Msg, handle: EventHandler) -> None:
    try:
        event = CloudEvent.model_validate_json(message.data)
    except ValidationError as exc:
        log.error(
            "consumer.event.malformed",
            durable=spec.durable,
            subject=message.subject,
            error=str(exc),
        )
        await message.term()
        return
    delivered = message.metadata.num_delivered or 1
    bound = log.bind(
        durable=spec.durable, event_id=event.id, event_type=event.type, delivered=delivered
    )
    try:
        await handle(event, message)
    except TransientError as exc:
        bound.warning("consumer.event.retry", reason=str(exc), delay_s=exc.delay)
        await message.nak(delay=exc.delay)
    except PermanentError as exc:
        bound.error("consumer.event.dropped", reason=str(exc))
        await message.term()
    except Exception as exc:
        delay = spec.retry_delay(delivered)
        bound.exception("consumer.event.error", delay_s=delay, error=repr(exc))
        await message.nak(delay=delay)
    else:
        await message.ack()


@contextlib.asynccontextmanager
async def keep_alive(message: Msg, every_s: float = 5.0) -> AsyncIterator[None]:
    """Tell JetStream that long work on ``message`` is still in progress, until the block ends."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await message.in_progress()

    async with in_background(beat()):
        yield
