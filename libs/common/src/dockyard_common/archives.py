"""The rules a user's tar archive must follow before any of it is read into an image.

Used by the API (to refuse a bad archive at submission) and by the builder (which never
trusts what it is handed). Never extract user archives with ``tarfile`` defaults: members
are checked one by one here and only regular files and directories pass. No network I/O.
"""

from __future__ import annotations

import contextlib
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dockyard_common.archive_streams import (
    METADATA_SLACK,
    BoundedStream,
    HostileArchive,
    StreamLimits,
)
from dockyard_common.errors import InvalidInput

__all__ = [
    "ArchiveLimits",
    "ArchiveMember",
    "HostileArchive",
    "ScannedArchive",
    "check_member",
    "extract_archive",
    "scan_archive",
]


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """Caps on a code archive: member count, total uncompressed bytes, and how far a
    gzipped one may inflate (see :mod:`dockyard_common.archive_streams` for the why)."""

    max_members: int = 100_000
    max_bytes: int = 2 * 1024**3
    max_captured_bytes: int = 256 * 1024
    max_ratio: int = 200
    ratio_from_bytes: int = 128 * 1024**2

    def stream_limits(self) -> StreamLimits:
        """The bounds of the inflating stream: the byte cap plus a header or two a member."""
        return StreamLimits(
            max_total_bytes=self.max_bytes + METADATA_SLACK + 4096 * self.max_members,
            max_ratio=self.max_ratio,
            ratio_from_bytes=self.ratio_from_bytes,
        )


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


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
_READ_AHEAD = 1024 * 1024
"""tarfile's read size: large reads keep skipping a member's data cheap."""


class _Reader:
    """A tar stream read member by member; only reading errors become :class:`InvalidInput`.

    Errors writing what was read (a full disk, say) are not the user's and pass unchanged.
    """

    def __init__(self, archive: tarfile.TarFile, stream: BoundedStream, kind: str) -> None:
        self.archive = archive
        self._stream = stream
        self._kind = kind

    def _bad(self, exc: BaseException) -> InvalidInput:
        return InvalidInput(f"archive is not a readable {self._kind} file: {exc}")

    def members(self, limits: ArchiveLimits) -> Iterator[tuple[tarfile.TarInfo, ArchiveMember]]:
        """Each member with its checked form, enforcing the caps and refusing clashes."""
        count = 0
        total = 0
        files: set[str] = set()
        directories: set[str] = set()
        iterator = iter(self.archive)
        while True:
            try:
                info = next(iterator)
            except StopIteration:
                return
            except _READ_ERRORS as exc:
                raise self._bad(exc) from exc
            checked = check_member(info)
            if checked is None:
                continue
            parents = {
                "/".join(checked.name.split("/")[:i]) for i in range(1, checked.name.count("/") + 1)
            }
            clash = (parents & files) or (
                checked.name in directories if not checked.is_dir else checked.name in files
            )
            if clash:
                raise InvalidInput(f"archive holds {checked.name!r} both as a file and a directory")
            (directories if checked.is_dir else files).add(checked.name)
            directories |= parents
            count += 1
            total += checked.size
            if count > limits.max_members:
                raise HostileArchive(f"archive holds more than {limits.max_members} members")
            if total > limits.max_bytes:
                raise HostileArchive(f"archive unpacks to more than {limits.max_bytes} bytes")
            # Its data, padded to whole tar blocks, may now be read.
            self._stream.allow(checked.size + (-checked.size % tarfile.BLOCKSIZE))
            yield info, checked

    def chunks(self, info: tarfile.TarInfo) -> Iterator[bytes]:
        """The content of a regular member, a megabyte at a time."""
        try:
            source = self.archive.extractfile(info)
            while source is not None and (chunk := source.read(1024 * 1024)):
                yield chunk
        except _READ_ERRORS as exc:
            raise self._bad(exc) from exc


@contextlib.contextmanager
def _reading(fileobj: IO[bytes], compressed: bool, limits: ArchiveLimits) -> Iterator[_Reader]:
    kind = "tar.gz" if compressed else "tar"
    # Inflated here rather than by tarfile, with bounds checked as the bytes come out.
    stream = BoundedStream(fileobj, compressed=compressed, limits=limits.stream_limits())
    try:
        archive = tarfile.open(fileobj=stream, mode="r|", bufsize=_READ_AHEAD)  # noqa: SIM115
    except _READ_ERRORS as exc:
        raise InvalidInput(f"archive is not a readable {kind} file: {exc}") from exc
    with archive:
        yield _Reader(archive, stream, kind)


def scan_archive(
    fileobj: IO[bytes], limits: ArchiveLimits, capture: frozenset[str] = frozenset()
) -> ScannedArchive:
    """Check every member of a tar.gz stream; :class:`InvalidInput` on the first bad one.

    The content of members whose normalised name is in ``capture`` (``valohai.yaml``, say)
    is returned too. Blocking (it decompresses): call it from a worker thread.
    """
    members: list[ArchiveMember] = []
    captured: dict[str, bytes] = {}
    with _reading(fileobj, True, limits) as reader:
        for info, checked in reader.members(limits):
            members.append(checked)
            if checked.name in capture and not checked.is_dir:
                if checked.size > limits.max_captured_bytes:
                    raise InvalidInput(
                        f"{checked.name} is larger than {limits.max_captured_bytes} bytes"
                    )
                captured[checked.name] = b"".join(reader.chunks(info))
    return ScannedArchive(members, captured)


def extract_archive(
    fileobj: IO[bytes], dest: Path, limits: ArchiveLimits, *, compressed: bool = True
) -> int:
    """Write a tar stream's directories and regular files under ``dest``; the file count.

    Every member passes :func:`check_member` first; modes are reduced to executable or
    not, owners dropped. Blocking: call it from a worker thread.
    """
    files = 0
    with _reading(fileobj, compressed, limits) as reader:
        for info, member in reader.members(limits):
            target = dest / member.name
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                for chunk in reader.chunks(info):
                    out.write(chunk)
            target.chmod(0o755 if member.executable else 0o644)
            files += 1
    return files
