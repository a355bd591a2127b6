"""The router's consumer of rollout reports: endpoint states become routes in Redis.

Aliases do not come this way: every router process watches the alias record itself, and
one process of each router writes Redis's alias table from that watch (:mod:`.store`)."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_common import CloudEvent, ConsumerSpec, EndpointState, EventType
from dockyard_common.runtime import run_consumer
from dockyard_router.store import RouteStore
from dockyard_router.tables import route_from_state

__all__ = ["ROUTES_CONSUMER", "follow_endpoint_states"]

ROUTES_CONSUMER = ConsumerSpec(
    durable="router-routes",
    event_types=[
        EventType.ENDPOINT_DEPLOYING,
        EventType.ENDPOINT_READY,
        EventType.ENDPOINT_FAILED,
        EventType.ENDPOINT_STOPPED,
        EventType.ENDPOINT_SCALED,
    ],
)


async def follow_endpoint_states(js: JetStreamContext, store: RouteStore) -> None:
    """Write a route for every endpoint state report, until cancelled."""

    async def handle(event: CloudEvent, _: Msg) -> None:
        await store.write(route_from_state(event.data_as(EndpointState)))

    await run_consumer(js, ROUTES_CONSUMER, handle)
