"""Turning an accepted submission into a version: pure decisions, no I/O."""

from __future__ import annotations

from datetime import datetime

from dockyard_api.inputs import VersionIn
from dockyard_common.errors import InvalidInput
from dockyard_common.models import Deployment, EndpointSpec, Version

__all__ = ["default_version_name", "new_version", "version_day"]


def version_day(now: datetime) -> str:
    """The day part of default version names, ``YYYYMMDD`` in UTC."""
    return now.strftime("%Y%m%d")


def default_version_name(day: str, sequence: int) -> str:
    """The default name of the ``sequence``-th version of a day: ``YYYYMMDD.N``."""
    return f"{day}.{sequence}"


def new_version(
    request: VersionIn, deployment: Deployment, name: str, endpoints: list[EndpointSpec]
) -> Version:
    """The version a submission creates, pending its build, placed on the deployment's targets."""
    names = [spec.name for spec in endpoints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"endpoint names must be unique; repeated: {', '.join(duplicates)}")
    return Version(
        owner=deployment.owner,
        project=deployment.project,
        deployment=deployment.name,
        name=name,
        code=request.code,
        endpoints=endpoints,
        env=request.env,
        targets=deployment.targets,
    )
