"""The rules a user's tar archive must follow before any of it is read into an image.

Used by the API (to refuse a bad archive at submission) and by the builder (which never
trusts what it is handed). Never extract user archives with ``tarfile`` defaults: members
are checked one by one here and only regular files and directories pass. No network I/O.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dockyard_common.errors import InvalidInput

__all__ = [
    "ArchiveLimits",
    "ArchiveMember",
    "ScannedArchive",
    "check_member",
    "extract_archive",
    "scan_archive",
]


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """Caps on a code archive: member count and total uncompressed bytes."""

    max_members: int = 100_000
    max_bytes: int = 2 * 1024**3
    max_captured_bytes: int = 256 * 1024


@dataclass(frozen=True)
class ArchiveMember:
    """A member that passed the checks, under its normalised relative name."""

    name: str
    is_dir: bool
    size: int
    executable: bool


def check_member(member: tarfile.TarInfo) -> ArchiveMember | None:
    """Normalise and check one member; None for the archive root (``.``).

    Raises :class:`InvalidInput` naming the member when it is absolute, climbs out with
    ``..``, is a link, device or FIFO, or is an overlay whiteout (``.wh.``).
    """
    raw = member.name
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidInput(f"archive member {raw!r} has an absolute path; use relative paths")
    parts = [part for part in raw.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"archive member {raw!r} climbs out of the archive with '..'")
    if not parts:
        return None
    if any(part.startswith(".wh.") for part in parts):
        raise InvalidInput(f"archive member {raw!r} is an overlay whiteout ('.wh.' name)")
    name = posixpath.join(*parts)
    if member.issym() or member.islnk():
        raise InvalidInput(
            f"archive member {raw!r} is a link to {member.linkname!r}; links are not accepted, "
            "include the file itself"
        )
    if member.isdir():
        return ArchiveMember(name, True, 0, False)
    if not member.isfile():
        raise InvalidInput(f"archive member {raw!r} is not a regular file or directory")
    return ArchiveMember(name, False, member.size, bool(member.mode & 0o111))


@dataclass(frozen=True)
class ScannedArchive:
    """Every member of a checked archive, and the content of the few files asked for."""

    members: list[ArchiveMember]
    captured: dict[str, bytes]


def _checked_members(
    archive: tarfile.TarFile, limits: ArchiveLimits
) -> Iterator[tuple[tarfile.TarInfo, ArchiveMember]]:
    """Each member with its checked form, enforcing the count and size caps as it goes."""
    count = 0
    total = 0
    for info in archive:
        checked = check_member(info)
        if checked is None:
            continue
        count += 1
        total += checked.size
        if count > limits.max_members:
            raise InvalidInput(f"archive holds more than {limits.max_members} members")
        if total > limits.max_bytes:
            raise InvalidInput(f"archive unpacks to more than {limits.max_bytes} bytes")
        yield info, checked


@contextlib.contextmanager
def _reading(fileobj: IO[bytes], compressed: bool) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz" if compressed else "r|") as archive:
            yield archive
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        kind = "tar.gz" if compressed else "tar"
        raise InvalidInput(f"archive is not a readable {kind} file: {exc}") from exc


def scan_archive(
    fileobj: IO[bytes], limits: ArchiveLimits, capture: frozenset[str] = frozenset()
) -> ScannedArchive:
    """Check every member of a tar.gz stream; :class:`InvalidInput` on the first bad one.

    The content of members whose normalised name is in ``capture`` (``valohai.yaml``, say)
    is returned too. Blocking (it decompresses): call it from a worker thread.
    """
    members: list[ArchiveMember] = []
    captured: dict[str, bytes] = {}
    with _reading(fileobj, compressed=True) as archive:
        for info, checked in _checked_members(archive, limits):
            members.append(checked)
            if checked.name in capture and not checked.is_dir:
                if checked.size > limits.max_captured_bytes:
                    raise InvalidInput(
                        f"{checked.name} is larger than {limits.max_captured_bytes} bytes"
                    )
                content = archive.extractfile(info)
                captured[checked.name] = content.read() if content is not None else b""
    return ScannedArchive(members, captured)


def extract_archive(
    fileobj: IO[bytes], dest: Path, limits: ArchiveLimits, *, compressed: bool = True
) -> int:
    """Write a tar stream's directories and regular files under ``dest``; the file count.

    Every member passes :func:`check_member` first; modes are reduced to executable or
    not, owners dropped. Blocking: call it from a worker thread.
    """
    files = 0
    with _reading(fileobj, compressed) as archive:
        for info, member in _checked_members(archive, limits):
            target = dest / member.name
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if target.is_dir():
                raise InvalidInput(f"archive holds {member.name!r} as a directory and a file")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(info)
            with target.open("wb") as out:
                if source is not None:
                    shutil.copyfileobj(source, out, 1024 * 1024)
            target.chmod(0o755 if member.executable else 0o644)
            files += 1
    return files
