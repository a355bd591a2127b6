"""The version rules: what a submission creates, what a start or a stop makes of a version.
Pure; the workflows that read and write are :mod:`dockyard_api.submission`,
:mod:`dockyard_api.starting` and :mod:`dockyard_api.stopping`.

A submission is decided in one call, :func:`decide_version`, from the request, the
deployment and the :class:`SubmissionFacts` read beforehand (the endpoints the code
defines, which blobs exist, which URLs are refused): the version to store, or one
:class:`InvalidInput` naming every problem found.

A stopped version keeps its record and its image (nothing deletes a built image), so a start
puts it back where the scheduler takes over after a build: status ``built``, announced as
``version.starting``. Its endpoints then report in as after a first deploy, and it is
``ready`` once every endpoint is ready on every target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dockyard_api.inputs import VersionIn
from dockyard_api.valohai import ValohaiEndpoints, endpoints_from_valohai_yaml
from dockyard_common.errors import InvalidInput
from dockyard_common.models import (
    Deployment,
    EndpointFile,
    EndpointSpec,
    Replicas,
    Version,
    VersionStatus,
)

__all__ = [
    "NeverBuilt",
    "NewVersion",
    "SubmissionFacts",
    "bind_files",
    "decide_version",
    "default_version_name",
    "inline_endpoints",
    "valohai_endpoints",
    "version_day",
    "version_started",
    "version_stopping",
]


def version_day(now: datetime) -> str:
    """The day part of default version names, ``YYYYMMDD`` in UTC."""
    return now.strftime("%Y%m%d")


def default_version_name(day: str, sequence: int) -> str:
    """The default name of the ``sequence``-th version of a day: ``YYYYMMDD.N``."""
    return f"{day}.{sequence}"


def inline_endpoints(request: VersionIn) -> list[EndpointSpec] | None:
    """The endpoint definitions the request gives inline; None when it names endpoints of a
    valohai.yaml instead, or gives none (all of the valohai.yaml's)."""
    if request.endpoints and isinstance(request.endpoints[0], EndpointSpec):
        return [spec for spec in request.endpoints if isinstance(spec, EndpointSpec)]
    return None


def valohai_endpoints(request: VersionIn, code_valohai_yaml: str | None) -> ValohaiEndpoints:
    """The endpoints the request takes from a valohai.yaml (its own, else the one at the
    root of its code) and the warnings of the rest of the document. :class:`InvalidInput`
    when there is none or what is deployed is refused.

    Blocking (parsing and validating take up to a second or two at the document bounds):
    call it from a worker thread."""
    names = [name for name in request.endpoints or [] if isinstance(name, str)] or None
    text = request.valohai_yaml if request.valohai_yaml is not None else code_valohai_yaml
    if text is None:
        raise InvalidInput(
            "no endpoint definitions: give 'endpoints' inline or 'valohai_yaml'"
            + ("" if request.code.git else ", or put a valohai.yaml at the root of the code")
        )
    return endpoints_from_valohai_yaml(text, names)


@dataclass(frozen=True, kw_only=True)
class SubmissionFacts:
    """What deciding a submission needs from outside the request, read beforehand."""

    endpoints: list[EndpointSpec] | None
    """The endpoints the submission defines, inline or in its valohai.yaml (None: refused)."""
    endpoints_refused: str | None = None
    """Why there are none: no definitions, or the valohai.yaml is refused."""
    missing_blobs: frozenset[str] = frozenset()
    """Digests of the files' blobs the project does not hold."""
    refused_urls: Mapping[str, str] = field(default_factory=dict)
    """File URLs the builder may not download from → why (plain http, a private address)."""
    git_refused: str | None = None
    """Why the builder may not fetch the git code from where it says."""
    warnings: list[str] = field(default_factory=list)
    """What the submission's valohai.yaml holds beyond what is deployed that would not
    validate (kept with the version for its user)."""


def bind_files(
    endpoints: list[EndpointSpec], files: Mapping[str, Mapping[str, str]]
) -> tuple[list[EndpointSpec], list[str]]:
    """The endpoints with each declared file bound to the blob digest or URL ``files``
    gives it, and the problems: endpoints or files ``files`` names that are not declared,
    and declared files left without a source."""
    by_name = {spec.name: spec for spec in endpoints}
    problems: list[str] = []
    unknown = sorted(set(files) - set(by_name))
    if unknown:
        problems.append(f"files name endpoints this version lacks: {', '.join(unknown)}")
    bound = []
    for spec in endpoints:
        given = files.get(spec.name, {})
        declared = {f.name for f in spec.files}
        extra = sorted(set(given) - declared)
        if extra:
            problems.append(
                f"endpoint {spec.name!r} declares no file {', '.join(map(repr, extra))}; "
                f"it declares {', '.join(map(repr, sorted(declared))) or 'none'}"
            )
        placed = [_placed(f, given.get(f.name)) for f in spec.files]
        missing = [f.name for f in placed if f.source is None]
        if missing:
            problems.append(
                f"endpoint {spec.name!r} needs file {', '.join(map(repr, missing))}: upload it "
                f"as a blob and give its digest (or an https URL) in files.{spec.name}"
            )
        bound.append(spec.model_copy(update={"files": placed}))
    return bound, problems


def _placed(file: EndpointFile, source: str | None) -> EndpointFile:
    if source is None:
        return file
    if source.startswith("sha256:"):
        return file.model_copy(update={"digest": source, "url": None})
    return file.model_copy(update={"url": source, "digest": None})


def _with_replicas(
    endpoints: list[EndpointSpec], replicas: Mapping[str, Replicas]
) -> tuple[list[EndpointSpec], list[str]]:
    """The endpoints with the replica counts given at submission, and the problem if it
    names endpoints the version lacks."""
    unknown = sorted(set(replicas) - {spec.name for spec in endpoints})
    problems = (
        [f"replicas name endpoints this version lacks: {', '.join(unknown)}"] if unknown else []
    )
    counted = [
        spec.model_copy(update={"replicas": replicas[spec.name]}) if spec.name in replicas else spec
        for spec in endpoints
    ]
    # min 0 scales to zero on request load; on CPU nothing measures an endpoint with no
    # replica, so it would never come back.
    on_cpu = sorted(
        spec.name for spec in counted if spec.replicas.min == 0 and spec.replicas.metric == "cpu"
    )
    if on_cpu:
        problems.append(
            f"replicas of {', '.join(map(repr, on_cpu))}: min 0 (scale to zero) needs "
            "metric concurrency (a CPU autoscaler cannot wake an endpoint with no replica); "
            "give min 1 or more, or metric concurrency"
        )
    return counted, problems


def _source_problems(
    endpoints: list[EndpointSpec], facts: SubmissionFacts, owner: str, project: str
) -> list[str]:
    """The files whose URL is refused or whose blob the project lacks."""
    problems = []
    for spec in endpoints:
        for file in spec.files:
            where = f"file {file.name!r} of endpoint {spec.name!r}"
            if file.url is not None and file.url in facts.refused_urls:
                problems.append(f"{where}: {facts.refused_urls[file.url]}")
            if file.digest is not None and file.digest in facts.missing_blobs:
                problems.append(
                    f"{where}: blob {file.digest} is not uploaded to {owner}/{project}; PUT "
                    f"it to /v1/projects/{owner}/{project}/blobs/{file.digest} first"
                )
    return problems


@dataclass(frozen=True)
class NewVersion:
    """A submission decided: the version it creates, once it has a name (a default name is
    taken when it is stored)."""

    request: VersionIn
    deployment: Deployment
    endpoints: list[EndpointSpec]
    warnings: list[str] = field(default_factory=list)

    def named(self, name: str) -> Version:
        """The version, pending its build, placed on the deployment's targets."""
        return Version(
            owner=self.deployment.owner,
            project=self.deployment.project,
            deployment=self.deployment.name,
            name=name,
            code=self.request.code,
            endpoints=self.endpoints,
            env=self.request.env,
            build=self.request.build,
            targets=self.deployment.targets,
            warnings=self.warnings,
        )


def decide_version(
    request: VersionIn, deployment: Deployment, facts: SubmissionFacts
) -> NewVersion:
    """The version a submission creates: its endpoints with their files bound and replica
    counts set; :class:`InvalidInput` naming every problem found (``; ``-separated)."""
    problems = [facts.git_refused] if facts.git_refused else []
    if facts.endpoints is None:
        problems.append(facts.endpoints_refused or "no endpoint definitions")
        raise InvalidInput("; ".join(problems))
    endpoints, binding = bind_files(facts.endpoints, request.files)
    endpoints, counting = _with_replicas(endpoints, request.replicas)
    problems += binding + counting
    problems += _source_problems(endpoints, facts, deployment.owner, deployment.project)
    names = [spec.name for spec in endpoints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"endpoint names must be unique; repeated: {', '.join(duplicates)}")
    if problems:
        raise InvalidInput("; ".join(problems))
    return NewVersion(request, deployment, endpoints, list(facts.warnings))


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


def version_stopping(version: Version, now: datetime) -> Version | None:
    """The version asked to stop on every target; None when it is stopped or stopping
    already (nothing to do)."""
    if version.status in _STOPPED:
        return None
    return version.model_copy(update={"status": VersionStatus.STOPPING, "updated_at": now})
