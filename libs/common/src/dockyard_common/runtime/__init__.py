"""The runtime pieces every service shares: NATS and Redis connections, the state of
record's stores, the event publisher and consumers, heartbeats, process lifecycles.

Apart from :mod:`dockyard_common`'s face (the contracts: names, models, events, subjects,
errors), so that importing the contracts pulls in no NATS or Redis client: the CLI and the
pure decision modules use them without either.
"""

from dockyard_common.runtime.consumers import EventHandler, keep_alive, run_consumer
from dockyard_common.runtime.heartbeats import Heartbeat
from dockyard_common.runtime.jetstream import EventPublisher, connect_nats, provision_jetstream
from dockyard_common.runtime.lifecycle import (
    cancellable,
    run_jetstream_service,
    run_until_signalled,
)
from dockyard_common.runtime.redis_client import connect_redis
from dockyard_common.runtime.state import Counter, ResourceStore, kv_write, watch_bucket

__all__ = [
    "Counter",
    "EventHandler",
    "EventPublisher",
    "Heartbeat",
    "ResourceStore",
    "cancellable",
    "connect_nats",
    "connect_redis",
    "keep_alive",
    "kv_write",
    "provision_jetstream",
    "run_consumer",
    "run_jetstream_service",
    "run_until_signalled",
    "watch_bucket",
]
