"""Delivering the queued deliveries, lane by lane: each lane in order, lanes side by side.

Every delivering process runs a task per lane that has messages, found by scanning the
queue's subjects and told at once by the local dispatcher; a lane's task ends when its lane
is empty. The lane consumer lets one message be in flight across all processes, so two
processes never deliver the same lane at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from dockyard_api.webhooks.deliveries import record_delivery
from dockyard_api.webhooks.models import DeliveryJob, DeliveryRecord, DeliveryStatus, Webhook
from dockyard_api.webhooks.queueing import lane_consumer
from dockyard_api.webhooks.schedule import next_attempt
from dockyard_api.webhooks.sender import Sender
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_common import get_logger, utcnow
from dockyard_common.runtime import ResourceStore, keep_alive
from dockyard_common.subjects import (
    WEBHOOK_DELIVERIES_STREAM,
    WEBHOOK_DELIVERY_PREFIX,
    webhook_key,
)

__all__ = ["LaneWorkers"]

log = get_logger(__name__)

_FETCH_WAIT_S = 5.0


class LaneWorkers:
    """The lane tasks of one delivering process."""

    def __init__(
        self,
        js: JetStreamContext,
        webhooks: ResourceStore[Webhook],
        sender: Sender,
        settings: WebhookSettings,
    ) -> None:
        self._js = js
        self._webhooks = webhooks
        self._sender = sender
        self._settings = settings
        self._policy = settings.retry_policy()
        self._wake: asyncio.Queue[str] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[None]] = {}

    def queued(self, lane: str) -> None:
        """A delivery was queued on ``lane``: make sure a task delivers it."""
        self._wake.put_nowait(lane)

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._scan())
            while True:
                lane = await self._wake.get()
                if lane not in self._running:
                    task = tasks.create_task(self._run_lane(lane))
                    self._running[lane] = task
                    task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for lane, running in list(self._running.items()):
            if running is task:
                del self._running[lane]

    async def _scan(self) -> None:
        # Lanes queued by other processes (the API's test events) or left by a dead process.
        while True:
            try:
                info = await self._js.stream_info(
                    WEBHOOK_DELIVERIES_STREAM, subjects_filter=f"{WEBHOOK_DELIVERY_PREFIX}.>"
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("webhook.scan.failed", error=repr(exc))
            else:
                for lane in info.state.subjects or {}:
                    self.queued(lane)
            await asyncio.sleep(self._settings.webhook_lane_scan_s)

    async def _run_lane(self, lane: str) -> None:
        try:
            await self._deliver_lane(lane)
        except (nats.errors.Error, TimeoutError) as exc:
            # The next scan starts the lane again; its message waits in the queue meanwhile.
            log.warning("webhook.lane.interrupted", lane=lane, error=repr(exc))
        except Exception:
            # Whatever one lane meets must not take the other lanes (and tenants) down with it.
            log.exception("webhook.lane.failed", lane=lane)

    async def _deliver_lane(self, lane: str) -> None:
        config = lane_consumer(lane, self._settings.webhook_ack_wait_s)
        durable = str(config.durable_name)
        await self._js.add_consumer(WEBHOOK_DELIVERIES_STREAM, config=config)
        subscription = await self._js.pull_subscribe_bind(
            durable=durable, stream=WEBHOOK_DELIVERIES_STREAM
        )
        try:
            while True:
                try:
                    messages = await subscription.fetch(1, timeout=_FETCH_WAIT_S)
                except TimeoutError:
                    info = await self._js.consumer_info(WEBHOOK_DELIVERIES_STREAM, durable)
                    if not info.num_pending and not info.num_ack_pending:
                        return  # the lane is empty: a new delivery starts it again
                    continue
                for message in messages:
                    await self._deliver(message)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def _deliver(self, message: Msg) -> None:
        try:
            job = DeliveryJob.model_validate_json(message.data)
        except ValidationError as exc:
            log.error("webhook.job.malformed", subject=message.subject, error=str(exc))
            await message.term()
            return
        bound = log.bind(webhook=job.webhook_id, delivery_id=job.delivery_id, lane=job.lane)
        stored = await self._webhooks.get(webhook_key(job.owner, job.project, job.webhook_id))
        if stored is None:
            bound.info("webhook.delivery.dropped", reason="the subscription was deleted")
            await message.term()
            return
        attempts = message.metadata.num_delivered or 1
        queued_at = message.metadata.timestamp or utcnow()
        async with keep_alive(message, every_s=self._settings.webhook_ack_wait_s / 3):
            attempt = await self._sender.send(stored.value, job)
        now = utcnow()
        wait = None if attempt.ok else next_attempt(self._policy, attempts, queued_at, now)
        status = (
            DeliveryStatus.DELIVERED
            if attempt.ok
            else DeliveryStatus.RETRYING
            if wait is not None
            else DeliveryStatus.FAILED
        )
        record = DeliveryRecord(
            delivery_id=job.delivery_id,
            event_id=job.event_id,
            event_type=job.event_type,
            deployment=None if job.lane.startswith("_") else job.lane,
            status=status,
            attempts=attempts,
            response_status=attempt.status,
            latency_ms=attempt.latency_ms,
            last_error=attempt.error,
            queued_at=queued_at,
            attempted_at=now,
            next_attempt_at=None if wait is None else now + _seconds(wait),
        )
        await record_delivery(self._js, job.owner, job.project, job.webhook_id, record)
        bound.info(
            f"webhook.delivery.{status.value}",
            attempts=attempts,
            status=attempt.status,
            error=attempt.error,
            retry_in_s=wait,
        )
        if attempt.ok:
            await message.ack_sync()  # confirmed before the lane's next delivery is fetched
        elif wait is not None:
            await message.nak(delay=wait)
        else:
            await message.term()


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
