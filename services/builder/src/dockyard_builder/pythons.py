"""Which Python a base image runs: what its dependency layer must be built for.

Read from the image when it is here: its config's ``PYTHON_VERSION`` (the official
``python`` images set it), else the interpreter its layers hold (``python3`` as a link to
``python3.X``, else a ``python3.X`` binary, else a ``python3.X`` standard library: images
made from Debian's packages have no ``PYTHON_VERSION``). Else its tag (``python:3.9-slim``),
else the builder's own. The layers of a base are read once per digest: the answer is kept.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import zstandard

from dockyard_builder.image import BaseImage
from dockyard_common import get_logger
from dockyard_common.oci_layout import OciLayout

__all__ = ["BasePython", "base_python", "python_in_paths", "python_version_of"]

log = get_logger(__name__)

_PYTHON_TAG = re.compile(r"(?:^|/)python:(\d+)\.(\d+)")
_VERSION = re.compile(r"(\d+)\.(\d+)")
_WANTED = re.compile(
    r"(?:usr/local/bin|usr/bin|bin)/python3(?:\.\d+)?|usr/(?:local/)?lib/python3\.\d+/os\.py"
)
_MINOR = re.compile(r"python(3\.\d+)")


@dataclass(frozen=True)
class BasePython:
    """A base image's Python (``3.9``) and how it was found, for the version's notes."""

    version: str
    found_by: str
    """``read from PYTHON_VERSION in its config``, ``read from its tag``, ..."""


def python_version_of(base_image: str, default: str) -> str:
    """The ``major.minor`` Python of an official ``python:X.Y...`` image, else ``default``."""
    match = _PYTHON_TAG.search(base_image)
    return f"{match.group(1)}.{match.group(2)}" if match else default


def python_in_paths(paths: Mapping[str, str | None]) -> tuple[str, str] | None:
    """(``3.X``, the path that says so) from an image's interpreter paths; None if none.

    ``paths`` maps paths (no leading ``/``) to a link's target, or None for a file. A
    ``python3`` link names the default interpreter and wins; then a ``python3.X`` binary
    (``/usr/local`` first, the newest), then a ``python3.X`` standard library. Pure.
    """
    for link in ("usr/local/bin/python3", "usr/bin/python3", "bin/python3"):
        target = paths.get(link)
        found = _MINOR.search(target.rsplit("/", 1)[-1]) if target else None
        if found:
            return found.group(1), f"/{link} -> {target}"
    for pattern in (
        r"usr/local/bin/python(3\.\d+)",
        r"(?:usr/)?bin/python(3\.\d+)",
        r"usr/(?:local/)?lib/python(3\.\d+)/os\.py",
    ):
        matches = [
            (tuple(int(part) for part in m.group(1).split(".")), m.group(1), path)
            for path in paths
            if (m := re.fullmatch(pattern, path))
        ]
        if matches:
            _, version, path = max(matches)
            return version, f"/{path}"
    return None


def base_python(
    name: str, base: BaseImage | None, layout: OciLayout, cache: Path, default: str
) -> BasePython:
    """The Python of base image ``name`` (``base`` when its layers are in ``layout``)."""
    config = (base.config.get("config") or {}) if base is not None else {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        match = _VERSION.match(value)
        if key == "PYTHON_VERSION" and match:
            return BasePython(
                f"{match.group(1)}.{match.group(2)}", "read from PYTHON_VERSION in its config"
            )
    if base is not None:
        found = _python_in_layers(base, layout, cache)
        if found is not None:
            return BasePython(found[0], f"read from its {found[1]}")
    tagged = _PYTHON_TAG.search(name)
    if tagged:
        return BasePython(f"{tagged.group(1)}.{tagged.group(2)}", "read from its tag")
    return BasePython(default, "the builder's own: the image says nothing of its Python")


def _python_in_layers(base: BaseImage, layout: OciLayout, cache: Path) -> tuple[str, str] | None:
    """What :func:`python_in_paths` finds in the base's layers, read once per base digest."""
    known = cache / f"{base.digest.removeprefix('sha256:')}.json"
    try:
        kept = json.loads(known.read_text())
        return (str(kept[0]), str(kept[1])) if kept else None
    except (OSError, ValueError, IndexError, TypeError):
        pass
    paths: dict[str, str | None] = {}
    for layer in base.layers:
        try:
            _apply_layer(layout.blob_path(layer["digest"]), layer["mediaType"], paths)
        except (OSError, tarfile.TarError, zstandard.ZstdError) as exc:
            # An unreadable layer tells nothing; the tag or the builder's Python is used.
            log.warning("build.base.unreadable", base=base.name, error=repr(exc))
            return None
    found = python_in_paths(paths)
    cache.mkdir(parents=True, exist_ok=True)
    known.write_text(json.dumps(list(found) if found else None))
    return found


def _apply_layer(blob: Path, media_type: str, paths: dict[str, str | None]) -> None:
    """Record the interpreter paths one layer adds, links or removes (whiteouts)."""
    with blob.open("rb") as raw:
        if media_type.endswith("+zstd"):
            with (
                zstandard.ZstdDecompressor().stream_reader(raw) as plain,
                tarfile.open(fileobj=plain, mode="r|") as archive,
            ):
                _read_members(archive, paths)
            return
        with tarfile.open(fileobj=raw, mode="r|*") as archive:
            _read_members(archive, paths)


def _read_members(archive: Iterable[tarfile.TarInfo], paths: dict[str, str | None]) -> None:
    for member in archive:
        name = member.name
        while name.startswith("./"):
            name = name[2:]
        name = name.lstrip("/")
        directory, _, leaf = name.rpartition("/")
        if leaf.startswith(".wh."):
            # ".wh..wh..opq" empties its directory; ".wh.<name>" removes <name>.
            removed = directory if leaf == ".wh..wh..opq" else f"{directory}/{leaf[4:]}"
            removed = removed.strip("/")
            for path in [p for p in paths if p == removed or p.startswith(f"{removed}/")]:
                del paths[path]
            continue
        if _WANTED.fullmatch(name):
            paths[name] = member.linkname if member.issym() or member.islnk() else None
