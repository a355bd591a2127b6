"""The retention sweeper: stops versions that warm-rollback retention no longer keeps.

It runs in the API process, as a periodic background task of the app's lifespan: the API
is the only writer of the state of record, and a stop is the same compare-and-set write
that ``DELETE .../versions/{version}`` makes (announced as ``version.stopping``, which the
schedulers act on). Several API processes may sweep at once: each stop is a CAS on a
version read *before* its deployment's aliases, so a sweep racing an alias change loses
and looks again on its next round (aliases rewrite the versions they point to).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from dockyard_api.retention import RetentionPolicy, versions_to_stop
from dockyard_common import (
    Alias,
    Conflict,
    Deployment,
    EventType,
    Version,
    VersionStatus,
    get_logger,
    utcnow,
)
from dockyard_common.runtime import ResourceStore
from dockyard_common.subjects import alias_key, deployment_key, version_key

__all__ = ["run_sweeper", "sweep_once"]

log = get_logger(__name__)


async def sweep_once(
    deployments: ResourceStore[Deployment],
    versions: ResourceStore[Version],
    aliases: ResourceStore[Alias],
    policy: RetentionPolicy,
    now: datetime | None = None,
) -> list[str]:
    """One round over every deployment; the keys of the versions it stopped."""
    stopped = []
    async for _, deployment in deployments.items():
        d = deployment.value
        prefix = version_key(d.owner, d.project, d.name, "")
        listed = [stored.value async for _, stored in versions.items(prefix)]
        found = await _aliases(aliases, d)
        for candidate in versions_to_stop(listed, found, policy, now or utcnow()):
            key = version_key(d.owner, d.project, d.name, candidate.name)
            if await _stop_if_still_unkept(versions, aliases, d, key, policy, now):
                stopped.append(key)
    return stopped


async def _aliases(aliases: ResourceStore[Alias], d: Deployment) -> list[Alias]:
    prefix = alias_key(d.owner, d.project, d.name, "")
    return [stored.value async for _, stored in aliases.items(prefix)]


async def _stop_if_still_unkept(
    versions: ResourceStore[Version],
    aliases: ResourceStore[Alias],
    d: Deployment,
    key: str,
    policy: RetentionPolicy,
    now: datetime | None,
) -> bool:
    stored = await versions.get(key)  # read before the aliases: see the module docstring
    if stored is None:
        return False
    prefix = version_key(d.owner, d.project, d.name, "")
    listed = [s.value async for _, s in versions.items(prefix)]
    decided = versions_to_stop(listed, await _aliases(aliases, d), policy, now or utcnow())
    if stored.value.name not in {v.name for v in decided}:
        return False
    stopping = stored.value.model_copy(
        update={"status": VersionStatus.STOPPING, "updated_at": utcnow()}
    )
    try:
        await versions.update(key, stopping, stored.revision, announce=EventType.VERSION_STOPPING)
    except Conflict:
        return False  # changed meanwhile (an alias, a report): the next round decides again
    log.info("retention.version.stopped", key=key, deployment=deployment_key(*d.scope))
    return True


async def run_sweeper(
    deployments: ResourceStore[Deployment],
    versions: ResourceStore[Version],
    aliases: ResourceStore[Alias],
    policy: RetentionPolicy,
    every_s: float,
) -> None:
    """Sweep every ``every_s`` seconds until cancelled (a failed round is logged, not fatal)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await sweep_once(deployments, versions, aliases, policy)
        except Exception:
            log.exception("retention.sweep.failed")
