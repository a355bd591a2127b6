"""The delivery log: every attempt's outcome, kept per subscription in a bounded stream.

Each attempt appends the delivery's new :class:`DeliveryRecord`; reading folds them, the
latest record of each delivery winning. The stream keeps at most
``WEBHOOK_LOG_PER_SUBSCRIPTION`` records per subscription, for 30 days.
"""

from __future__ import annotations

import contextlib

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard_api.webhooks.models import DeliveryRecord
from dockyard_common.subjects import WEBHOOK_LOG_STREAM, webhook_log_subject

__all__ = ["forget_deliveries", "read_deliveries", "record_delivery"]


async def record_delivery(
    js: JetStreamContext, owner: str, project: str, webhook_id: str, record: DeliveryRecord
) -> None:
    """Append the outcome of an attempt to the subscription's log."""
    await js.publish(
        webhook_log_subject(owner, project, webhook_id),
        record.model_dump_json().encode(),
        stream=WEBHOOK_LOG_STREAM,
    )


async def read_deliveries(
    js: JetStreamContext, owner: str, project: str, webhook_id: str
) -> list[DeliveryRecord]:
    """Every logged delivery of the subscription in its latest state, newest first."""
    subject = webhook_log_subject(owner, project, webhook_id)
    info = await js.stream_info(WEBHOOK_LOG_STREAM, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    latest: dict[str, DeliveryRecord] = {}
    if count:
        subscription = await js.subscribe(
            subject,
            stream=WEBHOOK_LOG_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        try:
            while True:
                message = await subscription.next_msg(timeout=5.0)
                record = DeliveryRecord.model_validate_json(message.data)
                latest[record.delivery_id] = record
                if not message.metadata.num_pending:
                    break
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
    return sorted(latest.values(), key=lambda r: (r.queued_at, r.delivery_id), reverse=True)


async def forget_deliveries(
    js: JetStreamContext, owner: str, project: str, webhook_id: str
) -> None:
    """Drop a deleted subscription's log."""
    await js.purge_stream(
        WEBHOOK_LOG_STREAM, subject=webhook_log_subject(owner, project, webhook_id)
    )
