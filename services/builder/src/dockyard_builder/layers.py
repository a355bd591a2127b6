"""Deterministic image layers: the same files always give the same bytes and digests.

Entries are sorted by name; owner, group and mtime are fixed; modes are 0755 for
directories and executables, 0644 for other files. gzip is written without a name or
timestamp. No network I/O: layers are written to local files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import zstandard

from dockyard_common.errors import InvalidInput

__all__ = [
    "MEDIA_TYPE_LAYER",
    "MEDIA_TYPE_LAYER_GZIP",
    "MEDIA_TYPE_LAYER_ZSTD",
    "Compression",
    "LayerBlob",
    "LayerEntry",
    "entries_from_directory",
    "file_size_in_layer",
    "write_layer",
]

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
_MEDIA_TYPES = {
    "gzip": MEDIA_TYPE_LAYER_GZIP,
    "zstd": MEDIA_TYPE_LAYER_ZSTD,
    "none": MEDIA_TYPE_LAYER,
}

Compression = Literal["gzip", "zstd", "none"]
"""How a layer's tar is compressed: gzip for code, none or zstd for weights."""

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LayerEntry:
    """One path in a layer: a directory (``source`` None) or a file copied from ``source``."""

    name: str
    source: Path | None
    executable: bool = False


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its blob digest (compressed), diff id (uncompressed) and file."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    path: Path


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()

    def tell(self) -> int:
        return self.size


class _CountingReader:
    """A read-only file that reports how many bytes were read from it."""

    def __init__(self, source: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._source = source
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._on_bytes(len(data))
        return data


def entries_from_directory(root: Path, prefix: str) -> list[LayerEntry]:
    """Every directory and regular file under ``root`` as entries under ``prefix``."""
    entries = [LayerEntry(prefix, None)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        relative = Path(dirpath).relative_to(root)
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                raise InvalidInput(
                    f"{(relative / name).as_posix()} is a symbolic link; "
                    "links are not accepted in code"
                )
            entries.append(LayerEntry(f"{prefix}/{(relative / name).as_posix()}", None))
        for name in [*dirnames, *filenames]:
            if name.startswith(".wh."):
                raise InvalidInput(
                    f"{(relative / name).as_posix()}: names starting with .wh. are image "
                    "whiteouts and are not accepted in code"
                )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                raise InvalidInput(
                    f"{(relative / name).as_posix()} is not a regular file "
                    "(links and devices are not accepted in code)"
                )
            entries.append(
                LayerEntry(
                    f"{prefix}/{(relative / name).as_posix()}",
                    path,
                    executable=bool(path.stat().st_mode & 0o111),
                )
            )
    return entries


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _tar_info(
    name: str, *, is_dir: bool, size: int = 0, executable: bool = False
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir or executable else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_layer(
    entries: Iterable[LayerEntry],
    dest: Path,
    compression: Compression,
    on_bytes: Callable[[int], None] | None = None,
) -> LayerBlob:
    """Write ``entries`` as one layer to ``dest``; parents of every file are added as dirs.

    ``on_bytes`` hears of every chunk of file content read, for progress reports.
    """
    by_name: dict[str, LayerEntry] = {}
    for entry in entries:
        for parent in _parents(entry.name):
            by_name.setdefault(parent, LayerEntry(parent, None))
        by_name[entry.name] = entry
    with dest.open("wb") as raw:
        blob = _HashingWriter(raw)
        compressor: gzip.GzipFile | zstandard.ZstdCompressionWriter | None = None
        if compression == "gzip":
            compressor = gzip.GzipFile(
                filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6
            )
        elif compression == "zstd":
            # One thread and a fixed level: the same bytes always compress the same way.
            compressor = zstandard.ZstdCompressor(level=3).stream_writer(
                blob,  # type: ignore[arg-type]
                closefd=False,
                write_return_read=True,
            )
        # Uncompressed, the blob is the tar itself: one hash serves as digest and diff id.
        tar_stream = _HashingWriter(compressor) if compressor is not None else blob  # type: ignore[arg-type]
        # Not stream mode ("w|"): its 10 KiB re-buffering copies every byte several times.
        with tarfile.open(fileobj=tar_stream, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            tar.copybufsize = _CHUNK
            for name in sorted(by_name):
                entry = by_name[name]
                if entry.source is None:
                    tar.addfile(_tar_info(name, is_dir=True))
                    continue
                size = entry.source.stat().st_size
                with entry.source.open("rb") as content:
                    tar.addfile(
                        _tar_info(name, is_dir=False, size=size, executable=entry.executable),
                        content if on_bytes is None else _CountingReader(content, on_bytes),
                    )
        if compressor is not None:
            compressor.close()
    return LayerBlob(
        digest=f"sha256:{blob.hash.hexdigest()}",
        diff_id=f"sha256:{tar_stream.hash.hexdigest()}",
        size=blob.size,
        media_type=_MEDIA_TYPES[compression],
        path=dest,
    )


def file_size_in_layer(layer: LayerBlob) -> int | None:
    """The size of the first regular file in ``layer`` (a file layer holds one); None if none.

    Reads tar headers only as far as that file: a layer's directories come first.
    """
    with layer.path.open("rb") as raw:
        if layer.media_type == MEDIA_TYPE_LAYER_ZSTD:
            with (
                zstandard.ZstdDecompressor().stream_reader(raw) as plain,
                tarfile.open(fileobj=plain, mode="r|") as archive,
            ):
                return _first_file_size(archive)
        with tarfile.open(fileobj=raw, mode="r|*") as archive:
            return _first_file_size(archive)


def _first_file_size(archive: tarfile.TarFile) -> int | None:
    for member in archive:
        if member.isfile():
            return member.size
    return None
