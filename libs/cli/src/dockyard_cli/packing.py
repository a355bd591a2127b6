"""Packing a folder of code into the archive a version is built from.

The archive is a deterministic tar.gz — same files, same bytes, same digest — so that
deploying unchanged code uploads nothing: names sorted, times, owners and gzip header
zeroed, modes reduced to 0644/0755. Files matched by ``.gitignore`` (in any folder) or a
``.dockyardignore`` at the root are left out, as is ``.git``; links are skipped, since
the platform refuses them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["IgnoreRule", "Packed", "ignore_rules", "is_ignored", "pack", "packed_files"]

_CHUNK = 1024 * 1024
ALWAYS_IGNORED = (".git", ".dockyard", "__pycache__", ".venv")


@dataclass(frozen=True)
class IgnoreRule:
    """One line of an ignore file, relative to the folder holding that file."""

    base: str
    """The folder of the ignore file, relative to the root ("" for the root)."""
    pattern: re.Pattern[str]
    negated: bool
    directories_only: bool


def _translate(glob: str) -> str:
    """A gitignore glob as a regular expression over a ``/``-separated relative path."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def parse_ignore(text: str, base: str = "") -> list[IgnoreRule]:
    """The rules of one ignore file (gitignore syntax: ``!``, trailing ``/``, ``**``)."""
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        directories_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        glob = line.lstrip("/")
        regex = _translate(glob) if anchored else "(?:.*/)?" + _translate(glob)
        rules.append(IgnoreRule(base, re.compile(regex + r"\Z"), negated, directories_only))
    return rules


def ignore_rules(root: Path, folder: str = "") -> list[IgnoreRule]:
    """The rules a folder adds: its ``.gitignore``, and at the root the ``.dockyardignore``."""
    rules: list[IgnoreRule] = []
    names = [".gitignore", ".dockyardignore"] if folder == "" else [".gitignore"]
    for name in names:
        path = root / folder / name
        if path.is_file():
            rules += parse_ignore(path.read_text(errors="replace"), folder)
    return rules


def is_ignored(relative: str, is_dir: bool, rules: list[IgnoreRule]) -> bool:
    """Whether the last rule matching ``relative`` (a ``/`` path) ignores it. Pure."""
    ignored = False
    for rule in rules:
        if rule.directories_only and not is_dir:
            continue
        if rule.base:
            if not relative.startswith(rule.base + "/"):
                continue
            candidate = relative[len(rule.base) + 1 :]
        else:
            candidate = relative
        if rule.pattern.match(candidate):
            ignored = not rule.negated
    return ignored


def packed_files(root: Path) -> list[str]:
    """The ``/``-separated paths of the files that go into the archive, sorted."""
    found: list[str] = []

    def walk(folder: str, rules: list[IgnoreRule]) -> None:
        rules = rules + ignore_rules(root, folder)
        with os.scandir(root / folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if entry.name in ALWAYS_IGNORED or is_ignored(relative, True, rules):
                        continue
                    walk(relative, rules)
                elif entry.is_file() and not is_ignored(relative, False, rules):
                    found.append(relative)

    walk("", [])
    return sorted(found)


@dataclass
class Packed:
    """A packed archive: where it is, its digest and what went in."""

    path: Path
    digest: str
    size: int
    files: list[str] = field(default_factory=list)


class _Hashing(io.RawIOBase):
    """Write-through to a file, hashing and counting what passes."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def pack(root: Path, destination: Path) -> Packed:
    """Write the deterministic tar.gz of ``root`` to ``destination``."""
    files = packed_files(root)
    with destination.open("wb") as out:
        hashing = _Hashing(out)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for relative in files:
                path = root / relative
                stat = path.stat()
                info = tarfile.TarInfo(relative)
                info.size = stat.st_size
                info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as content:
                    tar.addfile(info, content)
    return Packed(destination, f"sha256:{hashing.hash.hexdigest()}", hashing.size, files)
