"""Starting a stopped version again from its built image (the rule is
:func:`dockyard_api.version_rules.version_started`)."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard_api.context import ApiContext
from dockyard_api.problems import Problem
from dockyard_api.scopes import existing_deployment
from dockyard_api.version_rules import NeverBuilt, version_started
from dockyard_common import Conflict, EventType, Version, get_logger, utcnow
from dockyard_common.subjects import version_key

__all__ = ["Start", "request_start"]

log = get_logger(__name__)

_ATTEMPTS = 20


@dataclass(frozen=True)
class Start:
    """The version after a start was asked for, and its revision."""

    version: Version
    revision: int
    started: bool
    """False when it was not stopped: nothing was written."""


async def request_start(
    context: ApiContext, owner: str, project: str, deployment: str, version: str
) -> Start:
    """Put a stopped (or stopping) version back to ``built``, announced as
    ``version.starting``. 404 when it does not exist, 409 ``version-not-built`` when it was
    stopped before its build finished."""
    await existing_deployment(context, owner, project, deployment)
    key = version_key(owner, project, deployment, version)
    for _ in range(_ATTEMPTS):
        stored = await context.versions.get(key)
        if stored is None:
            raise Problem(
                404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
            )
        try:
            started = version_started(stored.value, utcnow())
        except NeverBuilt as exc:
            raise Problem(409, "version-not-built", str(exc)) from None
        if started is None:
            return Start(stored.value, stored.revision, started=False)
        try:
            revision = await context.versions.update(
                key, started, stored.revision, announce=EventType.VERSION_STARTING
            )
        except Conflict:
            continue  # a report of its stop landed meanwhile; look again
        log.info(
            "version.start.requested",
            owner=owner,
            project=project,
            deployment=deployment,
            version=version,
            revision=revision,
        )
        return Start(started, revision, started=True)
    raise Problem(409, "conflict", f"version {version!r} kept changing; retry")
