"""The delivering process: the dispatcher and the lane workers, side by side."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from dockyard_api.webhooks.dispatch import dispatch_events
from dockyard_api.webhooks.lanes import LaneWorkers
from dockyard_api.webhooks.models import Webhook
from dockyard_api.webhooks.sender import Sender
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_api.webhooks.subscriptions import Subscriptions
from dockyard_common.runtime import Heartbeat, ResourceStore
from dockyard_common.subjects import WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT, WEBHOOKS_BUCKET

__all__ = ["deliver_webhooks"]


async def deliver_webhooks(nc: NatsClient, settings: WebhookSettings) -> None:
    """Queue events for their subscriptions and deliver them, until cancelled."""
    js = nc.jetstream()
    webhooks = await ResourceStore.open(js, WEBHOOKS_BUCKET, Webhook)
    subscriptions = Subscriptions()
    heartbeat = Heartbeat(nc, WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT)
    sender = Sender(settings.webhook_allowed_hosts, settings.webhook_timeout_s)
    lanes = LaneWorkers(js, webhooks, sender, settings)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(subscriptions.follow(webhooks, heartbeat.applied_through))
            tasks.create_task(heartbeat.run())
            tasks.create_task(dispatch_events(js, subscriptions, lanes.queued))
            tasks.create_task(lanes.run())
    finally:
        await sender.close()
