"""Building tar archives for tests, including the hostile kinds users might send."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def tar_gz(files: dict[str, bytes], *, hostile: list[tarfile.TarInfo] | None = None) -> bytes:
    """A tar.gz with ``files`` (name → content) and any ``hostile`` members appended."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for info in hostile or []:
            archive.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


def folder_tar_gz(folder: Path) -> bytes:
    """A folder's files as a tar.gz, as the CLI packs a repository."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return tar_gz({str(path.relative_to(folder)): path.read_bytes() for path in files})


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    """A tar member header of the given type."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info
