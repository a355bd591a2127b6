"""Versions: submit one (stored, then ``version.created``), read where it stands, list them."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import urllib.parse
from typing import IO, Annotated

import nats.js.errors
from fastapi import APIRouter, Depends, Query, Response

from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.inputs import VersionIn
from dockyard_api.listing import BadCursor, Page, page_after
from dockyard_api.preconditions import etag
from dockyard_api.problems import Problem
from dockyard_api.routes.blobs import blob_exists
from dockyard_api.routes.paths import DeploymentPath, OwnerPath, ProjectPath, VersionPath
from dockyard_api.scopes import existing_deployment
from dockyard_api.submission import (
    default_version_name,
    new_version,
    version_day,
    with_files,
    with_replicas,
)
from dockyard_api.valohai import endpoints_from_valohai_yaml
from dockyard_common import (
    Conflict,
    Deployment,
    EndpointSpec,
    EventType,
    InvalidInput,
    Version,
    VersionStatus,
    get_logger,
    utcnow,
)
from dockyard_common.addresses import UnsafeDestination, check_file_url, checked_git_destination
from dockyard_common.archives import ArchiveLimits, HostileArchive, scan_archive
from dockyard_common.subjects import (
    alias_key,
    blob_object_name,
    version_key,
    version_sequence_key,
)

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(
    prefix="/v1/projects/{owner}/{project}/deployments/{deployment}/versions",
    tags=["versions"],
)

VALOHAI_YAML = "valohai.yaml"


def _check_code(archive: IO[bytes], limits: ArchiveLimits) -> str | None:
    """Check the code archive member by member; return its root ``valohai.yaml`` if any."""
    scanned = scan_archive(archive, limits, capture=frozenset({VALOHAI_YAML}))
    content = scanned.captured.get(VALOHAI_YAML)
    return None if content is None else content.decode("utf-8", errors="replace")


async def _code_valohai_yaml(
    context: ApiContext, owner: str, project: str, digest: str
) -> str | None:
    """Fetch the code blob, check it is a safe tar.gz, and return its ``valohai.yaml``.

    Blobs never change, so a code blob that passed is remembered and not fetched again.
    """
    name = blob_object_name(owner, project, digest)
    if name in context.checked_code:
        return context.checked_code.get(name)
    refused = context.refused_blobs.reason(digest)
    if refused is not None:
        raise Problem(422, "hostile-archive", f"code blob {digest} was refused: {refused}")
    limits = ArchiveLimits(
        max_members=context.settings.max_archive_members,
        max_bytes=context.settings.max_upload_bytes,
    )
    with tempfile.TemporaryFile() as archive:
        try:
            await context.blobs.get(name, writeinto=archive)
        except nats.js.errors.ObjectNotFoundError:
            raise Problem(
                422,
                "missing-blob",
                f"code blob {digest} is not uploaded to {owner}/{project}; "
                f"PUT it to /v1/projects/{owner}/{project}/blobs/{digest} first",
            ) from None
        archive.seek(0)
        try:
            valohai_yaml = await asyncio.to_thread(_check_code, archive, limits)
        except HostileArchive as exc:
            await _forget_hostile_blob(context, name, digest, str(exc))
            raise Problem(
                422, "hostile-archive", f"code blob {digest} was refused: {exc}"
            ) from None
    context.checked_code.put(name, valohai_yaml)
    return valohai_yaml


async def _forget_hostile_blob(context: ApiContext, name: str, digest: str, reason: str) -> None:
    """Remember the digest as refused and delete the blob: it is not worth keeping, and
    every reader of it (the builder too) would pay the same cost again."""
    context.refused_blobs.refuse(digest, reason)
    # A concurrent submission of the same blob may have deleted it first.
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await context.blobs.delete(name)
    log.warning("blob.refused.hostile", blob=name, reason=reason)


@router.post("", status_code=201)
async def create_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    body: VersionIn,
    response: Response,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Version:
    """Submit a version: checked, stored pending, announced as ``version.created``."""
    stored_deployment = await existing_deployment(context, owner, project, deployment)
    code_yaml = None
    if body.code.blob is not None:
        code_yaml = await _code_valohai_yaml(context, owner, project, body.code.blob)
    elif (
        body.code.git is not None
        and body.code.git.url.startswith("file://")
        and not context.settings.git_allow_file_urls
    ):
        raise InvalidInput(
            f"git URL {body.code.git.url!r} reads this server's disk; use https:// or ssh://"
        )

    endpoints: list[EndpointSpec]
    if body.endpoints and isinstance(body.endpoints[0], EndpointSpec):
        endpoints = [spec for spec in body.endpoints if isinstance(spec, EndpointSpec)]
    else:
        names = [name for name in body.endpoints or [] if isinstance(name, str)] or None
        text = body.valohai_yaml if body.valohai_yaml is not None else code_yaml
        if text is None:
            raise InvalidInput(
                "no endpoint definitions: give 'endpoints' inline or 'valohai_yaml'"
                + ("" if body.code.git else ", or put a valohai.yaml at the root of the code")
            )
        # Parsing and validating may take a second at the document bounds: not on the loop.
        endpoints = await asyncio.to_thread(endpoints_from_valohai_yaml, text, names)
    endpoints = with_files(endpoints, {e: dict(f) for e, f in body.files.items()})
    endpoints = with_replicas(endpoints, dict(body.replicas))
    for spec in endpoints:
        for file in spec.files:
            if file.url is not None and not context.settings.files_allow_http:
                await _check_public_https(file.url, f"file {file.name!r} of endpoint {spec.name!r}")
            if file.digest and not await blob_exists(context, owner, project, file.digest):
                raise InvalidInput(
                    f"file {file.name!r} of endpoint {spec.name!r}: blob {file.digest} is not "
                    f"uploaded to {owner}/{project}; PUT it to "
                    f"/v1/projects/{owner}/{project}/blobs/{file.digest} first"
                )
    git = body.code.git
    if (
        git is not None
        and not git.url.startswith("file://")
        and not context.settings.git_allow_private_addresses
    ):
        # The builder checks again before it connects: a name may resolve elsewhere by then.
        try:
            await checked_git_destination(git.url, allow_private=False)
        except UnsafeDestination as exc:
            raise InvalidInput(f"git URL {git.url}: {exc}") from None

    if body.name is not None:
        version = new_version(body, stored_deployment.value, body.name, endpoints)
        key = version_key(owner, project, deployment, body.name)
        try:
            revision = await context.versions.create(
                key, version, announce=EventType.VERSION_CREATED
            )
        except Conflict:
            raise Problem(409, "version-exists", f"version {body.name!r} already exists") from None
    else:
        version, key, revision = await _create_with_default_name(
            context, body, stored_deployment.value, endpoints
        )
    log.info(
        "version.submitted",
        owner=owner,
        project=project,
        deployment=deployment,
        version=version.name,
        revision=revision,
    )
    response.headers["ETag"] = etag(revision)
    response.headers["Location"] = (
        f"/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version.name}"
    )
    return version


async def _check_public_https(url: str, what: str) -> None:
    """Refuse plain http, and hosts that are or resolve to this machine or private networks
    (the builder checks again when it downloads: a name may resolve elsewhere by then)."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise InvalidInput(f"{what}: {url} is not https")
    try:
        await check_file_url(url)
    except UnsafeDestination as exc:
        raise InvalidInput(f"{what}: {exc}") from None


async def _create_with_default_name(
    context: ApiContext, body: VersionIn, deployment: Deployment, endpoints: list[EndpointSpec]
) -> tuple[Version, str, int]:
    """Store the version as the day's next ``YYYYMMDD.N``, skipping numbers a user took."""
    day = version_day(utcnow())
    sequence_key = version_sequence_key(deployment.owner, deployment.project, deployment.name, day)
    for _ in range(100):
        name = default_version_name(day, await context.sequences.next(sequence_key))
        version = new_version(body, deployment, name, endpoints)
        key = version_key(deployment.owner, deployment.project, deployment.name, name)
        try:
            revision = await context.versions.create(
                key, version, announce=EventType.VERSION_CREATED
            )
        except Conflict:
            continue  # named so by a user: take the next number
        return version, key, revision
    raise Problem(409, "conflict", f"no free version name for {day}; name the version")


@router.get("/{version}")
async def get_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    response: Response,
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Version:
    """Where a version stands: overall, per endpoint and per target."""
    await existing_deployment(context, owner, project, deployment)
    stored = await context.versions.get(version_key(owner, project, deployment, version))
    if stored is None:
        raise Problem(
            404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
        )
    response.headers["ETag"] = etag(stored.revision)
    return stored.value


@router.get("")
async def list_versions(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="The 'next' of the previous page.")] = None,
) -> Page[Version]:
    """The deployment's versions, newest first, ``limit`` a page."""
    await existing_deployment(context, owner, project, deployment)
    prefix = version_key(owner, project, deployment, "")
    versions = [stored.value async for _, stored in context.versions.items(prefix)]
    versions.sort(key=_position, reverse=True)
    try:
        return page_after(versions, _position, cursor, limit)
    except BadCursor as exc:
        raise Problem(422, "invalid-input", str(exc)) from None


def _position(version: Version) -> list[str]:
    return [version.created_at.isoformat(), version.name]


@router.delete("/{version}", status_code=202)
async def stop_version(
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
    force: Annotated[bool, Query(description="Stop it even if an alias points to it.")] = False,
) -> Version:
    """Stop a version on every target (202: it is stopping). Refused while an alias uses it."""
    await existing_deployment(context, owner, project, deployment)
    key = version_key(owner, project, deployment, version)
    prefix = alias_key(owner, project, deployment, "")
    for _ in range(20):
        stored = await context.versions.get(key)
        if stored is None:
            raise Problem(
                404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
            )
        if stored.value.status in (VersionStatus.STOPPING, VersionStatus.STOPPED):
            return stored.value
        # Read after the version: a switch writes its alias, then rewrites the version (see
        # aliases._hold_versions); if that hold lands before the write below, the write
        # fails and this check runs again, now seeing the alias.
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
        stopping = stored.value.model_copy(
            update={"status": VersionStatus.STOPPING, "updated_at": utcnow()}
        )
        try:
            await context.versions.update(
                key, stopping, stored.revision, announce=EventType.VERSION_STOPPING
            )
        except Conflict:
            continue  # a status report or an alias landed meanwhile; look again
        return stopping
    raise Problem(409, "conflict", f"version {version!r} kept changing; retry")
