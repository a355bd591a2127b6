"""The dispatcher: a durable consumer of the event stream that queues each event for every
subscription it matches, on the lane of the event's deployment.

A queued delivery's msg id is its delivery id, so an event redelivered to the dispatcher
(after a crash between queueing and acknowledging) is not queued twice.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_api.webhooks.models import DeliveryJob, matches
from dockyard_api.webhooks.queueing import enqueue
from dockyard_api.webhooks.signing import delivery_id
from dockyard_api.webhooks.subscriptions import Subscriptions
from dockyard_common import CloudEvent, get_logger
from dockyard_common.runtime import run_consumer
from dockyard_common.subscriptions import DISPATCH_CONSUMER

__all__ = ["dispatch_events"]

log = get_logger(__name__)


async def dispatch_events(
    js: JetStreamContext, subscriptions: Subscriptions, queued: Callable[[str], None]
) -> None:
    """Queue every event for its subscriptions until cancelled; ``queued(lane)`` after each.
    Starts once the subscriptions are loaded."""

    async def handle(event: CloudEvent, message: Msg) -> None:
        # dockyard.events.<owner>.<project>.<deployment>.<type>
        _, _, owner, project, deployment, _ = message.subject.split(".", 5)
        for webhook in subscriptions.of_project(owner, project):
            # A subscription gets the events published after it was made, not the backlog.
            if event.time < webhook.created_at or not matches(webhook, event.type, deployment):
                continue
            job = DeliveryJob(
                webhook_id=webhook.id,
                owner=owner,
                project=project,
                lane=deployment,
                delivery_id=delivery_id(webhook.id, event.id),
                event_id=event.id,
                event_type=event.type,
                body=message.data.decode(),
            )
            lane = await enqueue(js, job)
            log.debug("webhook.queued", webhook=webhook.id, event_id=event.id, lane=lane)
            queued(lane)

    await subscriptions.loaded.wait()
    await run_consumer(js, DISPATCH_CONSUMER, handle)
