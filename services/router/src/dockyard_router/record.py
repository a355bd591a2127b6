"""The route and alias tables rebuilt from the state of record (JetStream KV).

Redis holds derived state: a Redis restarted without persistence comes back empty, and
the tables are then rebuilt from the versions' endpoint states and the aliases.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from dockyard_common import Alias, ResourceStore, Version
from dockyard_common.subjects import ALIASES_BUCKET, VERSIONS_BUCKET
from dockyard_router.tables import RouteTable, route_from_state

__all__ = ["table_from_record"]


async def table_from_record(js: JetStreamContext) -> RouteTable:
    """Every route and alias the state of record knows, as a fresh table."""
    table = RouteTable()
    versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
    async for _, stored in versions.items():
        for state in stored.value.endpoint_states:
            table.put(route_from_state(state))
    aliases = await ResourceStore.open(js, ALIASES_BUCKET, Alias)
    async for _, alias in aliases.items():
        table.put_alias(alias.value, alias.revision)
    return table
