"""A project's blobs in the JetStream object store, as the API reads them: whether one
exists, and a code archive checked member by member with the ``valohai.yaml`` at its root."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from typing import IO

import nats.js.errors

from dockyard_api.context import ApiContext
from dockyard_api.problems import Problem
from dockyard_common import get_logger
from dockyard_common.archives import ArchiveLimits, HostileArchive, scan_archive
from dockyard_common.subjects import blob_object_name

__all__ = ["VALOHAI_YAML", "blob_exists", "code_valohai_yaml"]

log = get_logger(__name__)

VALOHAI_YAML = "valohai.yaml"


async def blob_exists(context: ApiContext, owner: str, project: str, digest: str) -> bool:
    """Whether the project holds the blob ``digest`` (``sha256:<hex>``)."""
    try:
        await context.blobs.get_info(blob_object_name(owner, project, digest))
    except nats.js.errors.ObjectNotFoundError:
        return False
    return True


def _scan_code(archive: IO[bytes], limits: ArchiveLimits) -> str | None:
    """Check the code archive member by member; return its root ``valohai.yaml`` if any."""
    scanned = scan_archive(archive, limits, capture=frozenset({VALOHAI_YAML}))
    content = scanned.captured.get(VALOHAI_YAML)
    return None if content is None else content.decode("utf-8", errors="replace")


async def code_valohai_yaml(
    context: ApiContext, owner: str, project: str, digest: str
) -> str | None:
    """Fetch the code blob, check it is a safe tar.gz, and return its ``valohai.yaml``.
    422 ``missing-blob`` when the project lacks it, ``hostile-archive`` when it is refused.

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
            valohai_yaml = await asyncio.to_thread(_scan_code, archive, limits)
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
