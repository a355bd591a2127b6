"""The aliases feed: where each alias points, on the path of every alias switch.

A switch is answered once every live router process says it has applied the alias
bucket's revision (its heartbeat, fed by :mod:`.record` after each write of this feed). So
a write is applied in the watch's own callback, parsed once without the alias's history
(up to twenty changes, read for nothing), with no queue in between.
"""

from __future__ import annotations

from dockyard_common.subjects import ALIASES_BUCKET
from dockyard_router.feeds.feed import Feed
from dockyard_router.routed import RoutedAlias
from dockyard_router.tables import RouteTable

__all__ = ["ALIASES", "alias_table_key"]


def alias_table_key(kv_key: str) -> str:
    """``owner.project.deployment.alias`` as the tables and heartbeats name it:
    ``owner/project/deployment/alias``."""
    return "/".join(kv_key.split(".", 3))


ALIASES = Feed(
    name="aliases",
    bucket=ALIASES_BUCKET,
    model=RoutedAlias,
    table_key=alias_table_key,
    put=RouteTable.put_alias,
    held=RouteTable.held_aliases,
    keep=RouteTable.keep_aliases,
)
