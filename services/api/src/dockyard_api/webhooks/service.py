"""The delivering process: the dispatcher and the lane workers, side by side."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from dockyard_api.webhooks.dispatch import dispatch_events
from dockyard_api.webhooks.lanes import LaneWorkers
from dockyard_api.webhooks.models import Webhook
from dockyard_api.webhooks.sender import Sender
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_common import ResourceStore
from dockyard_common.subjects import WEBHOOKS_BUCKET

__all__ = ["deliver_webhooks"]


async def deliver_webhooks(js: JetStreamContext, settings: WebhookSettings) -> None:
    """Queue events for their subscriptions and deliver them, until cancelled."""
    webhooks = await ResourceStore.open(js, WEBHOOKS_BUCKET, Webhook)
    sender = Sender(settings.webhook_allowed_hosts, settings.webhook_timeout_s)
    lanes = LaneWorkers(js, webhooks, sender, settings)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(dispatch_events(js, webhooks, lanes.queued))
            tasks.create_task(lanes.run())
    finally:
        await sender.close()
