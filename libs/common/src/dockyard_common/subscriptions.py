"""Every durable consumer of the event stream: who consumes which event types, and how.

The specs are contracts like subjects are: each service runs its own
(:func:`dockyard_common.runtime.consumers.run_consumer`), and the event catalogue lists, per type,
who acts on it. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard_common.events import REPORT_TYPES, EventType
from dockyard_common.subjects import TRAFFIC_EVENT_TYPE, is_platform_event, is_report

__all__ = [
    "BUILD_CONSUMER",
    "CONSUMERS",
    "DISPATCH_CONSUMER",
    "SCHEDULE_CONSUMER",
    "STATUS_CONSUMER",
    "ConsumerSpec",
    "consumers_of",
]


@dataclass(frozen=True, kw_only=True)
class ConsumerSpec:
    """A durable consumer: its name, the event types it takes and its redelivery bounds."""

    durable: str
    event_types: Sequence[str]
    ack_wait_s: float = 30.0
    max_deliver: int = 50
    """-1: redeliver for as long as it takes."""
    max_ack_pending: int | None = None
    """1 keeps the stream's order: the next event waits until this one is acknowledged."""
    retry_delays_s: Sequence[float] = field(default=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0))
    concurrency: int = 1
    """Events handled at once: 1 handles them one after the other; more lets a slow one run
    beside the others (each in its own task), never fetching more than can be handled."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"consumer {self.durable}: concurrency must be at least 1")
        if self.max_ack_pending is not None and self.concurrency > self.max_ack_pending:
            raise ValueError(
                f"consumer {self.durable}: concurrency {self.concurrency} exceeds "
                f"max_ack_pending {self.max_ack_pending}"
            )

    def retry_delay(self, delivered: int) -> float:
        """Delay before the next attempt after ``delivered`` failed ones."""
        return self.retry_delays_s[min(delivered, len(self.retry_delays_s)) - 1]

    def takes(self, event_type: str) -> bool:
        """Whether this consumer receives ``event_type`` (``>`` takes every fact)."""
        if event_type in self.event_types:
            return True
        # A subject filter of dockyard.events.*.*.*.> (event_type_filter): every fact of a
        # deployment; reports and platform events live under other prefixes.
        return ">" in self.event_types and not (
            is_report(event_type)
            or is_platform_event(event_type)
            or event_type == TRAFFIC_EVENT_TYPE
        )


BUILD_CONSUMER = ConsumerSpec(
    durable="builder",
    event_types=[EventType.VERSION_CREATED],
    ack_wait_s=30.0,
    max_deliver=10,
)
"""The builder builds every created version."""

SCHEDULE_CONSUMER = ConsumerSpec(
    durable="scheduler",
    # version.starting: a stopped version is to run again, as after its build.
    event_types=[EventType.VERSION_BUILT, EventType.VERSION_STOPPING, EventType.VERSION_STARTING],
)
"""The scheduler places built versions on their targets and removes stopping ones."""

STATUS_CONSUMER = ConsumerSpec(durable="api-status", event_types=sorted(REPORT_TYPES))
"""The API folds every report into the state of record."""

DISPATCH_CONSUMER = ConsumerSpec(
    durable="webhooks-dispatch", event_types=[">"], max_deliver=-1, max_ack_pending=1
)
"""Webhook delivery queues every fact for its subscriptions, one event at a time and never
given up: an event is queued only after every event before it, even across several
delivering processes and after a failed (delayed) attempt."""

CONSUMERS: dict[str, ConsumerSpec] = {
    "api": STATUS_CONSUMER,
    "builder": BUILD_CONSUMER,
    "scheduler": SCHEDULE_CONSUMER,
    "webhooks": DISPATCH_CONSUMER,
}
"""Each service's durable consumer of the event stream."""


def consumers_of(event_type: str) -> list[str]:
    """The services whose durable consumer receives ``event_type``."""
    return [service for service, spec in CONSUMERS.items() if spec.takes(event_type)]
