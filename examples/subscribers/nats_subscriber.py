"""Print Dockyard status changes as they happen, from NATS JetStream (a service inside).

    python nats_subscriber.py nats://127.0.0.1:4222 acme demo

A durable consumer (named, so a restart resumes where it stopped and nothing is missed),
filtered by subject to one project's version and endpoint events; each event is
acknowledged after it is printed, so one that was not is delivered again. Events are
CloudEvents 1.0 in JSON on ``dockyard.events.<owner>.<project>.<deployment>.<type>``; their
schemas are in docs/events.md. Needs ``pip install nats-py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


async def main(url: str, owner: str, project: str) -> None:
    """Subscribe and print until interrupted."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    durable = f"status-printer-{owner}-{project}"
    await js.add_consumer(
        "DOCKYARD_EVENTS",
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,  # on first start; later it resumes
            filter_subjects=[
                f"dockyard.events.{owner}.{project}.*.version.>",
                f"dockyard.events.{owner}.{project}.*.endpoint.>",
            ],
        ),
    )
    subscription = await js.pull_subscribe_bind(durable=durable, stream="DOCKYARD_EVENTS")
    try:
        while True:
            try:
                messages = await subscription.fetch(1, timeout=30)
            except (NatsTimeout, TimeoutError):
                continue
            for message in messages:
                event = json.loads(message.data)
                data = event["data"]
                what = data.get("version") or data.get("name")
                status = data.get("status") or data.get("state", "")  # versions | endpoints
                print(f"{event['time']} {event['type']:24} {what} {status}")
                await message.ack()
    finally:
        await connection.drain()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(*sys.argv[1:4]))
