"""Blobs: content-addressed uploads (code archives, model files) in the JetStream object store."""

from __future__ import annotations

import hashlib
import tempfile
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from dockyard_api.auth import Deployer, Viewer
from dockyard_api.blob_store import blob_exists
from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import OwnerPath, ProjectPath
from dockyard_api.scopes import existing_project
from dockyard_common.subjects import blob_object_name

__all__ = ["router"]

router = APIRouter(prefix="/v1/projects/{owner}/{project}/blobs", tags=["blobs"])

HexDigest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256, 64 hex digits")]

# Bodies larger than this spill from memory to a temporary file while they are hashed.
_SPOOL_BYTES = 8 * 1024**2


class BlobStored(BaseModel):
    """A blob the project holds."""

    digest: str
    size: int | None = None
    status: str = Field(description="'created', or 'exists' when it was already there.")


@router.head(
    "/sha256:{hexdigest}",
    response_class=Response,
    responses={
        200: {
            "description": "The project holds the blob",
            "content": {"application/octet-stream": {}},
        }
    },
)
async def head_blob(
    owner: OwnerPath,
    project: ProjectPath,
    hexdigest: HexDigest,
    caller: Viewer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> Response:
    """200 when the project holds the blob, 404 when a client should upload it."""
    await existing_project(context, owner, project)
    if not await blob_exists(context, owner, project, f"sha256:{hexdigest}"):
        raise Problem(404, "not-found", f"the project holds no blob sha256:{hexdigest}")
    return Response(status_code=200, media_type="application/octet-stream")


@router.put(
    "/sha256:{hexdigest}",
    status_code=201,
    responses={200: {"model": BlobStored, "description": "Already there"}},
)
async def put_blob(
    owner: OwnerPath,
    project: ProjectPath,
    hexdigest: HexDigest,
    request: Request,
    response: Response,
    caller: Deployer,
    context: Annotated[ApiContext, Depends(get_context)],
) -> BlobStored:
    """Stream an upload into the store; refused unless its sha256 matches the URL. Idempotent."""
    await existing_project(context, owner, project)
    digest = f"sha256:{hexdigest}"
    refused = context.refused_blobs.reason(digest)
    if refused is not None:
        # Refused before a byte of the body is read: these bytes were found hostile.
        raise Problem(422, "hostile-archive", f"blob {digest} was refused before: {refused}")
    if await blob_exists(context, owner, project, digest):
        response.status_code = 200
        return BlobStored(digest=digest, status="exists")
    limit = context.settings.max_upload_bytes
    hasher = hashlib.sha256()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, "too-large", f"upload is larger than {limit} bytes")
            hasher.update(chunk)
            spool.write(chunk)
        if hasher.hexdigest() != hexdigest:
            raise Problem(
                422,
                "digest-mismatch",
                f"uploaded bytes hash to sha256:{hasher.hexdigest()}, not {digest}",
            )
        spool.seek(0)
        await context.blobs.put(blob_object_name(owner, project, digest), spool)  # type: ignore[arg-type]
    return BlobStored(digest=digest, size=size, status="created")
