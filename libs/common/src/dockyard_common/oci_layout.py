"""An OCI image layout on disk (image-spec ``image-layout.md``): written by the builder,
read by the scheduler's local driver.

Blobs are content-addressed and written by atomic rename, so a reader never sees half a
blob; ``index.json`` is replaced atomically under a file lock, so concurrent builds of
different versions into one layout never lose each other's tags.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MEDIA_TYPE_CONFIG",
    "MEDIA_TYPE_INDEX",
    "MEDIA_TYPE_MANIFEST",
    "REF_NAME",
    "BlobNotFound",
    "OciLayout",
    "canonical_json",
    "descriptor",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


class BlobNotFound(FileNotFoundError):
    """The layout has no blob of that digest."""


def canonical_json(document: dict[str, Any]) -> bytes:
    """JSON with sorted keys and no spaces: the same document always gives the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def descriptor(
    media_type: str, data: bytes, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """An OCI content descriptor of ``data``."""
    result: dict[str, Any] = {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
        "size": len(data),
    }
    if annotations:
        result["annotations"] = annotations
    return result


class OciLayout:
    """One OCI image layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        """Create the layout's skeleton if it is missing."""
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._write_atomic(marker, b'{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            self._write_atomic(self.root / "index.json", canonical_json(self._empty_index()))

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``sha256:<hex>`` lives (it may not exist)."""
        algorithm, _, hexdigest = digest.partition(":")
        # A digest becomes a path: anything but 64 hex digits could leave the layout.
        if algorithm != "sha256" or not _HEX64.fullmatch(hexdigest):
            raise ValueError(f"unsupported digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexdigest

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present."""
        return self.blob_path(digest).exists()

    def add_blob_file(self, path: Path, digest: str) -> None:
        """Move a file already hashed to ``digest`` into the layout (kept if already there)."""
        target = self.blob_path(digest)
        if target.exists():
            path.unlink()
            return
        os.replace(path, target)

    def add_blob(self, data: bytes) -> str:
        """Store ``data``; returns its digest."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        target = self.blob_path(digest)
        if not target.exists():
            self._write_atomic(target, data)
        return digest

    def read_blob(self, digest: str) -> bytes:
        """The bytes of a blob; :class:`BlobNotFound` if absent."""
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"{self.root} has no blob {digest}") from None

    def read_json(self, digest: str) -> dict[str, Any]:
        """A JSON blob (manifest, index, config) parsed."""
        document: dict[str, Any] = json.loads(self.read_blob(digest))
        return document

    def tag(self, ref_name: str, entry: dict[str, Any]) -> None:
        """Point ``ref_name`` at the descriptor ``entry`` in ``index.json`` (replacing any)."""
        with self._locked():
            index = self._read_index()
            manifests = [
                m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref_name
            ]
            annotations = dict(entry.get("annotations", {}), **{REF_NAME: ref_name})
            manifests.append(dict(entry, annotations=annotations))
            manifests.sort(key=lambda m: m["annotations"][REF_NAME])
            index["manifests"] = manifests
            self._write_atomic(self.root / "index.json", canonical_json(index))

    def resolve(self, ref_name: str) -> dict[str, Any] | None:
        """The descriptor tagged ``ref_name``, or None."""
        for entry in self._read_index()["manifests"]:
            if entry.get("annotations", {}).get(REF_NAME) == ref_name:
                found: dict[str, Any] = entry
                return found
        return None

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": []}

    def _read_index(self) -> dict[str, Any]:
        try:
            index: dict[str, Any] = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return self._empty_index()
        return index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.ensure()
        with (self.root / ".index.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(temporary, 0o644)  # mkstemp makes 0600; layouts are read by others
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
