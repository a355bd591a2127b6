"""Pushing a version image from the builder's layout to a registry, blobs first, tag last.

Every blob is checked with ``HEAD`` first and skipped when the registry has it; base layers
from another repository of the same registry are mounted rather than sent. Manifests go
after their blobs and the index's tag last, so an interrupted push never leaves a tag that
points at a half-published image; a retried push sends only what is still missing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dockyard_builder.registry import RegistryClient
from dockyard_common import get_logger
from dockyard_common.oci_layout import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, OciLayout

__all__ = ["PushResult", "push_image"]

log = get_logger(__name__)

_PARALLEL_REQUESTS = 4


@dataclass
class PushResult:
    """What a push sent: blobs uploaded (and their bytes), skipped and mounted."""

    reference: str
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0
    skipped_blobs: int = 0
    mounted_blobs: int = 0


def push_image(
    layout: OciLayout,
    index_digest: str,
    client: RegistryClient,
    repository: str,
    tag: str,
    mount_from: dict[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PushResult:
    """Push the index ``index_digest`` of ``layout`` as ``repository:tag``; blocking.

    ``mount_from`` maps blob digests to a repository of the same registry that holds them.
    ``progress`` hears ``("push", bytes sent, bytes to send)`` after every blob.
    """
    result = PushResult(reference=f"{client.host}/{repository}@{index_digest}")
    index = layout.read_json(index_digest)
    manifests = [entry["digest"] for entry in index["manifests"]]
    blobs: list[str] = []
    for manifest_digest in manifests:
        manifest = layout.read_json(manifest_digest)
        for digest in [manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"])]:
            if digest not in blobs:
                blobs.append(digest)

    def present(digest: str) -> str:
        if client.has_blob(repository, digest):
            return "skipped"
        source = (mount_from or {}).get(digest)
        if source is not None and client.mount_blob(repository, digest, source):
            return "mounted"
        return "missing"

    # Registries answer each request in milliseconds: a few at a time, not one by one.
    with ThreadPoolExecutor(max_workers=_PARALLEL_REQUESTS) as pool:
        outcomes = dict(zip(blobs, pool.map(present, blobs), strict=True))
        missing = [digest for digest, outcome in outcomes.items() if outcome == "missing"]
        result.skipped_blobs = sum(1 for o in outcomes.values() if o == "skipped")
        result.mounted_blobs = sum(1 for o in outcomes.values() if o == "mounted")
        to_send = sum(layout.blob_path(digest).stat().st_size for digest in missing)

        def upload(digest: str) -> int:
            with layout.blob_path(digest).open("rb") as blob:
                sent = client.upload_blob(repository, digest, blob)
            log.info("build.layer.pushed", repository=repository, digest=digest)
            return sent

        for sent in pool.map(upload, missing):
            result.uploaded_bytes += sent
            result.uploaded_blobs += 1
            if progress is not None:
                progress("push", result.uploaded_bytes, to_send)
    for manifest_digest in manifests:
        client.put_manifest(
            repository, manifest_digest, layout.read_blob(manifest_digest), MEDIA_TYPE_MANIFEST
        )
    client.put_manifest(repository, tag, layout.read_blob(index_digest), MEDIA_TYPE_INDEX)
    return result
