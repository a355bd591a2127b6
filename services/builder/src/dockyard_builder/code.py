"""Unpacking a user's code archive member by member, never with ``tarfile`` defaults."""

from __future__ import annotations

import shutil
import tarfile
import zlib
from pathlib import Path
from typing import IO

from dockyard_common import InvalidInput
from dockyard_common.archives import ArchiveLimits, check_member

__all__ = ["unpack_code"]


def unpack_code(archive: IO[bytes], dest: Path, limits: ArchiveLimits) -> int:
    """Write the archive's directories and regular files under ``dest``; return the file count.

    Every member passes :func:`check_member` first; modes are reduced to executable or not,
    owners dropped. Blocking: run it in a worker thread.
    """
    files = 0
    total = 0
    try:
        with tarfile.open(fileobj=archive, mode="r|gz") as tar:
            for info in tar:
                member = check_member(info)
                if member is None:
                    continue
                target = dest / member.name
                if member.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                files += 1
                total += member.size
                if files > limits.max_members:
                    raise InvalidInput(f"code archive holds more than {limits.max_members} files")
                if total > limits.max_bytes:
                    raise InvalidInput(
                        f"code archive unpacks to more than {limits.max_bytes} bytes"
                    )
                if target.is_dir():
                    raise InvalidInput(f"code archive holds {member.name!r} as a dir and a file")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(info)
                if source is None:  # pragma: no cover - regular files always have content
                    raise InvalidInput(f"archive member {member.name!r} has no content")
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                target.chmod(0o755 if member.executable else 0o644)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InvalidInput(f"code archive is not a readable tar.gz file: {exc}") from exc
    return files
