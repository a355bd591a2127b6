"""Starting a stopped version again: whether it can be, and the version once asked to. Pure.

A stopped version keeps its record and its image (nothing deletes a built image), so a start
puts it back where the scheduler takes over after a build: status ``built``, announced as
``version.starting``. Its endpoints then report in as after a first deploy, and it is
``ready`` once every endpoint is ready on every target.
"""

from __future__ import annotations

from datetime import datetime

from dockyard_common.models import Version, VersionStatus

__all__ = ["NeverBuilt", "version_started"]

_STOPPED = (VersionStatus.STOPPING, VersionStatus.STOPPED)


class NeverBuilt(Exception):
    """The version was stopped before its build finished: there is no image to start."""


def version_started(version: Version, now: datetime) -> Version | None:
    """The version asked to run again; None when it is not stopped (nothing to start).

    Its endpoint states are cleared (they said stopped) and its error too; ``started_at``
    records the start, from which retention counts its grace again. Raises
    :class:`NeverBuilt` when it has no image.
    """
    if version.status not in _STOPPED:
        return None
    if version.image is None:
        raise NeverBuilt(
            f"version {version.name!r} was stopped before its build finished: it has no image "
            "to start; submit the code again as a new version"
        )
    return version.model_copy(
        update={
            "status": VersionStatus.BUILT,
            "endpoint_states": [],
            "error": None,
            "started_at": now,
            "updated_at": now,
        }
    )
