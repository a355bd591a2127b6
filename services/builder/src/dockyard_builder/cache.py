"""Layers already built, by what they were made from, so an unchanged model costs nothing.

A file layer depends only on the file's bytes (its blob digest) and where it is placed;
once in the image layout it is reused by every later build, which then neither fetches
the blob nor writes the layer again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from dockyard_builder.layers import LayerBlob
from dockyard_common.oci_layout import OciLayout

__all__ = ["LayerCache"]


class LayerCache:
    """File layers by (blob digest, path), valid while their blob is in the layout."""

    def __init__(self, directory: Path, layout: OciLayout) -> None:
        self._directory = directory
        self._layout = layout

    def _entry(self, digest: str, path: str) -> Path:
        return self._directory / hashlib.sha256(f"{digest}\0{path}".encode()).hexdigest()

    def get(self, digest: str, path: str) -> LayerBlob | None:
        """The layer placing blob ``digest`` at ``path``, if built before and still there."""
        try:
            known = json.loads(self._entry(digest, path).read_text())
        except (OSError, ValueError):
            return None
        if not self._layout.has_blob(known["digest"]):
            return None
        return LayerBlob(
            digest=known["digest"],
            diff_id=known["diff_id"],
            size=known["size"],
            media_type=known["media_type"],
            path=self._layout.blob_path(known["digest"]),
        )

    def put(self, digest: str, path: str, layer: LayerBlob) -> None:
        """Remember the layer built for blob ``digest`` at ``path``."""
        self._directory.mkdir(parents=True, exist_ok=True)
        entry = {
            "digest": layer.digest,
            "diff_id": layer.diff_id,
            "size": layer.size,
            "media_type": layer.media_type,
        }
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            json.dump(entry, out)
        os.replace(temporary, self._entry(digest, path))
