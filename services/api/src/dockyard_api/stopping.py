"""Stopping a version on every target, unless an alias points at it (or forced).

A stop reads the version, then the aliases, then writes at the revision it read. An alias
switch writes its alias, then rewrites ("holds") each version it names
(:mod:`dockyard_api.switching`): if that hold lands before the stop's write, the write
fails and the stop looks again, now seeing the alias; if the stop wrote first, the hold
fails and the switch points the alias back.
"""

from __future__ import annotations

from dockyard_api.context import ApiContext
from dockyard_api.problems import Problem
from dockyard_api.scopes import existing_deployment
from dockyard_api.version_rules import version_stopping
from dockyard_common import Conflict, EventType, Version, utcnow
from dockyard_common.subjects import alias_key, version_key

__all__ = ["request_stop"]

_ATTEMPTS = 20


async def request_stop(
    context: ApiContext, owner: str, project: str, deployment: str, version: str, *, force: bool
) -> Version:
    """Mark the version stopping, announced as ``version.stopping``; the version as it
    stands when it is stopping or stopped already. 404 when it does not exist, 409
    ``version-in-use`` while an alias points at it (unless ``force``)."""
    await existing_deployment(context, owner, project, deployment)
    key = version_key(owner, project, deployment, version)
    prefix = alias_key(owner, project, deployment, "")
    for _ in range(_ATTEMPTS):
        stored = await context.versions.get(key)
        if stored is None:
            raise Problem(
                404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
            )
        stopping = version_stopping(stored.value, utcnow())
        if stopping is None:
            return stored.value
        # Read after the version: see the module's docstring.
        users = [
            a.value.name
            async for _, a in context.aliases.items(prefix)
            if version in a.value.versions
        ]
        if users and not force:
            raise Problem(
                409,
                "version-in-use",
                f"alias {', '.join(map(repr, users))} points to {version!r}: move it first, "
                "or pass force=true",
                aliases=users,
                version=version,
            )
        try:
            await context.versions.update(
                key, stopping, stored.revision, announce=EventType.VERSION_STOPPING
            )
        except Conflict:
            continue  # a status report or an alias landed meanwhile; look again
        return stopping
    raise Problem(409, "conflict", f"version {version!r} kept changing; retry")
