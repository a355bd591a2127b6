"""Turning an accepted submission into a version: pure decisions, no I/O."""

from __future__ import annotations

from datetime import datetime

from dockyard_api.inputs import VersionIn
from dockyard_common.errors import InvalidInput
from dockyard_common.models import Deployment, EndpointFile, EndpointSpec, Replicas, Version

__all__ = ["default_version_name", "new_version", "version_day", "with_files", "with_replicas"]


def version_day(now: datetime) -> str:
    """The day part of default version names, ``YYYYMMDD`` in UTC."""
    return now.strftime("%Y%m%d")


def default_version_name(day: str, sequence: int) -> str:
    """The default name of the ``sequence``-th version of a day: ``YYYYMMDD.N``."""
    return f"{day}.{sequence}"


def with_files(
    endpoints: list[EndpointSpec], files: dict[str, dict[str, str]]
) -> list[EndpointSpec]:
    """The endpoints with each declared file bound to its blob; every file must be given.

    Raises :class:`InvalidInput` naming undeclared endpoints or files, and missing ones.
    """
    by_name = {spec.name: spec for spec in endpoints}
    unknown = sorted(set(files) - set(by_name))
    if unknown:
        raise InvalidInput(f"files name endpoints this version lacks: {', '.join(unknown)}")
    bound = []
    for spec in endpoints:
        given = files.get(spec.name, {})
        declared = {f.name for f in spec.files}
        extra = sorted(set(given) - declared)
        if extra:
            raise InvalidInput(
                f"endpoint {spec.name!r} declares no file {', '.join(map(repr, extra))}; "
                f"it declares {', '.join(map(repr, sorted(declared))) or 'none'}"
            )
        placed = [_placed(f, given.get(f.name)) for f in spec.files]
        missing = [f.name for f in placed if f.source is None]
        if missing:
            raise InvalidInput(
                f"endpoint {spec.name!r} needs file {', '.join(map(repr, missing))}: upload it "
                f"as a blob and give its digest (or an https URL) in files.{spec.name}"
            )
        bound.append(spec.model_copy(update={"files": placed}))
    return bound


def with_replicas(
    endpoints: list[EndpointSpec], replicas: dict[str, Replicas]
) -> list[EndpointSpec]:
    """The endpoints with the replica counts given at submission; InvalidInput naming any
    endpoint the version lacks."""
    unknown = sorted(set(replicas) - {spec.name for spec in endpoints})
    if unknown:
        raise InvalidInput(f"replicas name endpoints this version lacks: {', '.join(unknown)}")
    return [
        spec.model_copy(update={"replicas": replicas[spec.name]}) if spec.name in replicas else spec
        for spec in endpoints
    ]


def _placed(file: EndpointFile, source: str | None) -> EndpointFile:
    if source is None:
        return file
    if source.startswith("sha256:"):
        return file.model_copy(update={"digest": source, "url": None})
    return file.model_copy(update={"url": source, "digest": None})


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
        build=request.build,
        targets=deployment.targets,
    )
