"""The regions feed: the regions an operator drained, through the API
(``PUT /v1/regions/{region}``), which then serve only when no other region can.

Drain is state of record: a router restarted, or a Redis that lost its data, cannot
undrain a region.
"""

from __future__ import annotations

from dockyard_common.subjects import REGIONS_BUCKET
from dockyard_router.feeds.feed import Feed
from dockyard_router.routed import RoutedRegion
from dockyard_router.tables import RouteTable

__all__ = ["REGIONS"]


def _region_key(kv_key: str) -> str:
    return kv_key  # a region's key is its name (dockyard_common.subjects.region_key)


REGIONS = Feed(
    name="regions",
    bucket=REGIONS_BUCKET,
    model=RoutedRegion,
    table_key=_region_key,
    put=RouteTable.put_region,
    held=RouteTable.held_regions,
    keep=RouteTable.keep_regions,
)
