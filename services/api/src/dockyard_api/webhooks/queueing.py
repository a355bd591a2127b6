"""The delivery queue: one lane (subject) per subscription and deployment, in a work queue.

A lane's consumer lets one message be in flight at a time (``max_ack_pending=1``) across
every delivering process: a failing delivery is negatively acknowledged with a delay and
stays the one in flight, so later events of the same deployment wait behind it while other
lanes go on. A process that dies mid-delivery leaves the message unacknowledged; JetStream
hands it to another process once the ack wait passes (at once after a delayed nak expires).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dockyard_api.webhooks.models import DeliveryJob
from dockyard_common.subjects import (
    WEBHOOK_DELIVERIES_STREAM,
    WEBHOOK_DELIVERY_PREFIX,
    webhook_lane_subject,
)

__all__ = ["enqueue", "forget_queue", "lane_consumer", "lane_of"]

LANE_IDLE_S = 3600.0
"""A lane consumer nobody pulls from for this long is removed by the server (recreated when
its lane has messages again: the work queue keeps them)."""


def lane_of(job: DeliveryJob) -> str:
    """The subject of the job's lane."""
    return webhook_lane_subject(job.owner, job.project, job.webhook_id, job.lane)


def lane_consumer(subject: str, ack_wait_s: float) -> ConsumerConfig:
    """The durable consumer of one lane: in order, one message in flight, never given up.

    ``ack_wait_s`` is how long an attempt may hold its message without a sign of life
    before JetStream hands it to another process.
    """
    webhook_id, lane = subject.split(".")[-2:]
    name = f"wh-{webhook_id}-{lane}"  # webhook ids are unique across owners
    return ConsumerConfig(
        durable_name=name,
        name=name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_ack_pending=1,
        max_deliver=-1,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject,
        inactive_threshold=LANE_IDLE_S,
    )


async def enqueue(js: JetStreamContext, job: DeliveryJob) -> str:
    """Queue ``job`` on its lane (once: the delivery id is the msg id); the lane's subject."""
    subject = lane_of(job)
    await js.publish(
        subject,
        job.model_dump_json().encode(),
        stream=WEBHOOK_DELIVERIES_STREAM,
        headers={"Nats-Msg-Id": job.delivery_id},
    )
    return subject


async def forget_queue(js: JetStreamContext, owner: str, project: str, webhook_id: str) -> None:
    """Drop every queued delivery of a deleted subscription."""
    await js.purge_stream(
        WEBHOOK_DELIVERIES_STREAM,
        subject=f"{WEBHOOK_DELIVERY_PREFIX}.{owner}.{project}.{webhook_id}.>",
    )
