"""The versions feed: each write of a version replaces that version's routes.

A version record holds its endpoints' states on every target as the API folded the
scheduler's reports in; a ready endpoint's upstreams are where requests go. Written on
every report that changes something, it is parsed by every router process, so only the
state and the endpoint states are read (:class:`~dockyard_router.routed.RoutedVersion`).
"""

from __future__ import annotations

from dockyard_common.subjects import VERSIONS_BUCKET
from dockyard_router.feeds.feed import Feed
from dockyard_router.routed import RoutedVersion
from dockyard_router.tables import RouteTable

__all__ = ["VERSIONS", "version_table_key"]


def version_table_key(kv_key: str) -> str:
    """``owner.project.deployment.version`` (the version's name may hold dots) as the
    tables name it: ``owner/project/deployment/version``."""
    return "/".join(kv_key.split(".", 3))


VERSIONS = Feed(
    name="versions",
    bucket=VERSIONS_BUCKET,
    model=RoutedVersion,
    table_key=version_table_key,
    put=RouteTable.put_version,
    held=RouteTable.held_versions,
    keep=RouteTable.keep_versions,
)
