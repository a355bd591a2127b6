"""Submitting a version: read the facts, decide, write once.

1. Facts (:func:`submission_facts`): the code archive checked and its ``valohai.yaml``, the
   endpoints the submission defines, which of its files' blobs the project lacks, which
   file URLs and which git URL the builder may not fetch. A missing or hostile code archive
   ends the submission here (422 ``missing-blob`` / ``hostile-archive``).
2. Decision (:func:`dockyard_api.version_rules.decide_version`, pure): the version to
   store, or one 422 naming every problem found.
3. Write: stored pending under its name (409 ``version-exists``) or the day's next
   ``YYYYMMDD.N``, announced as ``version.created``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from dockyard_api.blob_store import blob_exists, code_valohai_yaml
from dockyard_api.context import ApiContext
from dockyard_api.inputs import VersionIn
from dockyard_api.problems import Problem
from dockyard_api.scopes import existing_deployment
from dockyard_api.settings import ApiSettings
from dockyard_api.version_rules import (
    NewVersion,
    SubmissionFacts,
    bind_files,
    decide_version,
    default_version_name,
    inline_endpoints,
    valohai_endpoints,
    version_day,
)
from dockyard_common import Conflict, EventType, InvalidInput, Version, get_logger, utcnow
from dockyard_common.addresses import UnsafeDestination, check_file_url, checked_git_destination
from dockyard_common.models import GitRef
from dockyard_common.subjects import version_key, version_sequence_key

__all__ = ["Submitted", "file_url_refusal", "submission_facts", "submit_version"]

log = get_logger(__name__)

_LOOKUPS_AT_ONCE = 8
"""Blob and address look-ups in flight per submission: a valohai.yaml may declare
thousands of files, and name resolution shares the event loop's worker threads."""


@dataclass(frozen=True)
class Submitted:
    """A version stored pending its build, announced as ``version.created``."""

    version: Version
    revision: int


async def submit_version(
    context: ApiContext, owner: str, project: str, deployment: str, request: VersionIn
) -> Submitted:
    """Check a submission, store its version and announce it."""
    stored = await existing_deployment(context, owner, project, deployment)
    facts = await submission_facts(context, owner, project, request)
    decided = decide_version(request, stored.value, facts)
    if request.name is not None:
        version = decided.named(request.name)
        key = version_key(owner, project, deployment, request.name)
        try:
            revision = await context.versions.create(
                key, version, announce=EventType.VERSION_CREATED
            )
        except Conflict:
            raise Problem(
                409, "version-exists", f"version {request.name!r} already exists"
            ) from None
    else:
        version, revision = await _create_with_default_name(context, decided)
    log.info(
        "version.submitted",
        owner=owner,
        project=project,
        deployment=deployment,
        version=version.name,
        revision=revision,
    )
    return Submitted(version, revision)


async def submission_facts(
    context: ApiContext, owner: str, project: str, request: VersionIn
) -> SubmissionFacts:
    """What deciding the submission needs to know beyond the request (see the module)."""
    settings = context.settings
    code_yaml = None
    if request.code.blob is not None:
        code_yaml = await code_valohai_yaml(context, owner, project, request.code.blob)
    endpoints = inline_endpoints(request)
    warnings: list[str] = []
    if endpoints is None:
        try:
            # Parsing and validating may take a second at the document bounds: not on the loop.
            taken = await asyncio.to_thread(valohai_endpoints, request, code_yaml)
            endpoints, warnings = taken.specs, taken.warnings
        except InvalidInput as exc:
            git_refused = await _git_refusal(settings, request.code.git)
            return SubmissionFacts(
                endpoints=None, endpoints_refused=str(exc), git_refused=git_refused
            )
    # Only the files the endpoints declare are looked up: a request may name any number.
    bound, _ = bind_files(endpoints, request.files)
    files = [file for spec in bound for file in spec.files]
    digests = sorted({file.digest for file in files if file.digest is not None})
    urls = [] if settings.files_allow_http else sorted({f.url for f in files if f.url is not None})
    if not digests and not urls:  # most submissions: spare the look-ups' tasks
        git_refused = await _git_refusal(settings, request.code.git)
        return SubmissionFacts(endpoints=endpoints, git_refused=git_refused, warnings=warnings)
    limit = asyncio.Semaphore(_LOOKUPS_AT_ONCE)
    held, refusals, git_refused = await asyncio.gather(
        asyncio.gather(
            *(_bounded(limit, blob_exists(context, owner, project, d)) for d in digests)
        ),
        asyncio.gather(*(_bounded(limit, file_url_refusal(url)) for url in urls)),
        _git_refusal(settings, request.code.git),
    )
    return SubmissionFacts(
        endpoints=endpoints,
        missing_blobs=frozenset(d for d, there in zip(digests, held, strict=True) if not there),
        refused_urls={url: why for url, why in zip(urls, refusals, strict=True) if why},
        git_refused=git_refused,
        warnings=warnings,
    )


_T = TypeVar("_T")


async def _bounded(limit: asyncio.Semaphore, lookup: Awaitable[_T]) -> _T:
    async with limit:
        return await lookup


async def file_url_refusal(url: str) -> str | None:
    """Why the builder may not download a file from ``url`` (None: it may): plain http, or a
    host that is or resolves to this machine or a private network. The builder checks
    again when it downloads: a name may resolve elsewhere by then."""
    if urllib.parse.urlsplit(url).scheme != "https":
        return f"{url} is not https"
    try:
        await check_file_url(url)
    except UnsafeDestination as exc:
        return str(exc)
    return None


async def _git_refusal(settings: ApiSettings, git: GitRef | None) -> str | None:
    """Why the builder may not fetch the git code (None: it may, or the code is a blob)."""
    if git is None:
        return None
    if git.url.startswith("file://"):
        if settings.git_allow_file_urls:
            return None
        return f"git URL {git.url!r} reads this server's disk; use https:// or ssh://"
    if settings.git_allow_private_addresses:
        return None
    # The builder checks again before it connects: a name may resolve elsewhere by then.
    try:
        await checked_git_destination(git.url, allow_private=False)
    except UnsafeDestination as exc:
        return f"git URL {git.url}: {exc}"
    return None


async def _create_with_default_name(
    context: ApiContext, decided: NewVersion
) -> tuple[Version, int]:
    """Store the version as the day's next ``YYYYMMDD.N``, skipping numbers a user took."""
    deployment = decided.deployment
    day = version_day(utcnow())
    sequence_key = version_sequence_key(deployment.owner, deployment.project, deployment.name, day)
    for _ in range(100):
        name = default_version_name(day, await context.sequences.next(sequence_key))
        version = decided.named(name)
        key = version_key(deployment.owner, deployment.project, deployment.name, name)
        try:
            revision = await context.versions.create(
                key, version, announce=EventType.VERSION_CREATED
            )
        except Conflict:
            continue  # named so by a user: take the next number
        return version, revision
    raise Problem(409, "conflict", f"no free version name for {day}; name the version")
