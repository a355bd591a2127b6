"""A local workload's image: its OCI layout's app layers unpacked into a directory tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from dockyard_common import ImageInfo, PermanentError
from dockyard_common.archives import ArchiveLimits, extract_archive
from dockyard_common.oci_layout import BlobNotFound, OciLayout
from dockyard_scheduler.drivers.layouts import layout_of

__all__ = ["UnpackedImage", "extract_layer", "unpack_image"]

_LAYER_LIMITS = ArchiveLimits(max_members=1_000_000, max_bytes=64 * 1024**3)


@dataclass(frozen=True)
class UnpackedImage:
    """An image's file tree (``root``) and its runtime config (Env, Cmd, WorkingDir, ...)."""

    root: Path
    config: dict[str, Any]


def extract_layer(blob: Path, media_type: str, dest: Path) -> None:
    # Layers are the builder's own, but never trusted: the same checks as user archives.
    with blob.open("rb") as raw:
        if media_type.endswith("+zstd"):
            try:
                with zstandard.ZstdDecompressor().stream_reader(raw) as plain:
                    extract_archive(plain, dest, _LAYER_LIMITS, compressed=False)
            except zstandard.ZstdError as exc:
                raise PermanentError(f"layer {blob.name} is not readable zstd: {exc}") from exc
            return
        extract_archive(raw, dest, _LAYER_LIMITS, compressed=media_type.endswith("+gzip"))


def unpack_image(image: ImageInfo, manifest_digest: str, cache: Path) -> UnpackedImage:
    """Unpack the app layers of ``image``'s manifest ``manifest_digest`` once; later calls reuse it.

    The image is read from the builder's layout. A base image's layers are left out: local
    targets run the app on this machine's Python. Blocking: run it in a worker thread. The
    tree appears by atomic rename, complete or not at all. Every failure is a
    :class:`~dockyard_common.PermanentError` (or the archive checks' ``InvalidInput``).
    """
    layout = layout_of(image.layout or image.reference)
    base_layers = {layer.digest for layer in image.layers if layer.role == "base"}
    try:
        manifest = layout.read_json(manifest_digest)
        config = layout.read_json(manifest["config"]["digest"])
    except BlobNotFound as exc:
        raise PermanentError(f"image {manifest_digest} is not in {layout.root}: {exc}") from exc
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        raise PermanentError(
            f"cannot read image {manifest_digest} in {layout.root}: {exc}"
        ) from exc
    root = cache / manifest_digest.removeprefix("sha256:")
    if not root.exists():
        try:
            _unpack(layout, manifest, base_layers, cache, root)
        except OSError as exc:  # a layer blob gone, a full disk
            raise PermanentError(f"unpacking into {cache} failed: {exc}") from exc
    return UnpackedImage(root=root, config=config.get("config", {}))


def _unpack(
    layout: OciLayout, manifest: dict[str, Any], base_layers: set[str], cache: Path, root: Path
) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    try:
        for layer in manifest["layers"]:
            if layer["digest"] in base_layers:
                continue
            extract_layer(layout.blob_path(layer["digest"]), layer["mediaType"], scratch)
        with contextlib.suppress(FileExistsError, OSError):
            os.rename(scratch, root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
