"""A region's drain: state of record every router process follows (platform admin only).

Announced as ``platform.region.drained`` / ``platform.region.undrained``; a restarted Redis
or router cannot undrain a region. Asking for what already holds writes and announces
nothing.
"""

from __future__ import annotations

from dockyard_api.context import ApiContext
from dockyard_common import Conflict, EventType, Stored, utcnow
from dockyard_common.platform_facts import Region
from dockyard_common.subjects import region_key

__all__ = ["set_drained"]


async def set_drained(context: ApiContext, region: str, drained: bool) -> Stored[Region]:
    """Drain or undrain ``region``; the region as stored, with its revision."""
    key = region_key(region)
    announce = EventType.PLATFORM_REGION_DRAINED if drained else EventType.PLATFORM_REGION_UNDRAINED
    value = Region(name=region, drained=drained, updated_at=utcnow())
    for _ in range(10):
        current = await context.regions.get(key)
        if current is not None and current.value.drained == drained:
            return current  # already so: nothing written, nothing announced
        try:
            if current is None:
                revision = await context.regions.create(key, value, announce=announce)
            else:
                revision = await context.regions.update(
                    key, value, current.revision, announce=announce
                )
        except Conflict:
            continue  # another operator's change landed meanwhile: look again
        return Stored(value=value, revision=revision)
    raise Conflict(f"region {region!r} kept changing; retry")
