"""A real Python base image made from Debian's packages, for the container targets' tests.

No public image can be pulled on these machines, so the image the projects' ``python:3.x``
tags stand for is made here with ``mmdebstrap`` (Debian bookworm: Python 3.11) as a one-layer
OCI image layout, and kept under ``~/.cache/dockyard-tests/`` keyed by its recipe: a second
session (or a second checkout) finds it made. The builder takes it the way an operator gives
an offline machine its base images, ``DOCKYARD_BASE_IMAGE_LAYOUTS`` (docs/operations.md).

It is made to behave like the official ``python`` image where projects rely on it: ``python``
is Python 3 (``python-is-python3``), ``pip`` installs into the system Python as root (Debian's
``EXTERNALLY-MANAGED`` marker, which the official image does not have, is removed), and the
certificates are there for ``pip`` to reach an index: this machine's own bundle, as an
operator behind a TLS-inspecting proxy gives their base images its certificate (so ``pip`` in
a container reaches the index this machine reaches). It has no ``uv``, as the official image
has none, and its config says nothing of its Python: the builder reads it from the layers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from dockyard_common.oci_layout import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    OciLayout,
    canonical_json,
    descriptor,
)

__all__ = ["PYTHON_BASE_TAG", "RECIPE", "python_base_layout", "python_base_reference"]

PYTHON_BASE_TAG = "python-3.11-bookworm"
"""The image's tag in its layout."""

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_TRUST = "/etc/ssl/certs/ca-certificates.crt"
"""The certificates this machine trusts: the image trusts them too (see the module doc)."""
RECIPE: tuple[str, ...] = (
    "--variant=minbase",
    f"--include={','.join(PACKAGES)}",
    '--aptopt=Apt::Install-Recommends "false"',
    *(
        f"--dpkgopt=path-exclude=/usr/share/{folder}/*"
        for folder in ("doc", "man", "locale", "info")
    ),
    # The engine gives a container its /dev; a layer has no business holding device nodes.
    "--skip=output/dev",
    "--skip=output/mknod",
    '--customize-hook=rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED',
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    f"--customize-hook=copy-in {HOST_TRUST} /etc/ssl/certs",
    SUITE,
)
"""mmdebstrap's arguments (the output goes last); what the cache is keyed by."""

_CONFIG = {
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    ],
    "Cmd": ["python3"],
}
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/dockyard-tests`` (``~/.cache/dockyard-tests``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dockyard-tests"


def recipe_key() -> str:
    """What the image is made from, hashed: a changed recipe makes a new image."""
    trust = Path(HOST_TRUST)
    made_of = json.dumps(
        {
            "recipe": RECIPE,
            "config": _CONFIG,
            "tag": PYTHON_BASE_TAG,
            "trust": hashlib.sha256(trust.read_bytes()).hexdigest() if trust.exists() else None,
        }
    )
    return hashlib.sha256(made_of.encode()).hexdigest()[:12]


def python_base_reference() -> str:
    """``oci:<layout>:<tag>`` of the image, made first if the cache lacks it; skips the
    caller (with the reason) where mmdebstrap is missing or cannot make it."""
    return f"oci:{python_base_layout()}:{PYTHON_BASE_TAG}"


def python_base_layout() -> Path:
    """The layout directory holding the image, made once per recipe (see module doc)."""
    root = cache_root()
    final = root / f"python-base-{recipe_key()}"
    if _complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"python-base-{recipe_key()}.lock"):
        if not _complete(final):  # another session may have made it while we waited
            _make(final)
    return final


def _complete(layout: Path) -> bool:
    return OciLayout(layout).resolve(PYTHON_BASE_TAG) is not None if layout.is_dir() else False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make(final: Path) -> None:
    binary = shutil.which("mmdebstrap")
    if binary is None:
        pytest.skip(
            "no mmdebstrap to make the Python base image from Debian's packages: "
            "apt-get install mmdebstrap (.ci/system-deps.sh does)"
        )
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".making-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        made = subprocess.run(
            [binary, "--quiet", *RECIPE, str(rootfs)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if made.returncode != 0:
            pytest.skip(
                f"mmdebstrap could not make the Python base image (exit {made.returncode}): "
                f"{made.stderr.strip()[-2000:]}"
            )
        layout_dir = Path(scratch) / "layout"
        with rootfs.open("rb") as layer:
            _write_layout(layout_dir, layer)
        rootfs.unlink()
        # A reader sees no layout, or a whole one.
        layout_dir.rename(final)


def _write_layout(directory: Path, layer: IO[bytes]) -> None:
    """A one-layer image of the (uncompressed) rootfs tar ``layer``, tagged."""
    layout = OciLayout(directory)
    layout.ensure()
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as copy:
        while chunk := layer.read(1 << 20):
            digest.update(chunk)
            copy.write(chunk)
            size += len(chunk)
    layer_digest = f"sha256:{digest.hexdigest()}"
    layout.add_blob_file(Path(copy.name), layer_digest)
    config = canonical_json(
        {
            "architecture": _ARCHITECTURES.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": _CONFIG,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            # podman refuses to build on a base without history (docs/operations.md).
            "history": [{"created_by": f"mmdebstrap {' '.join(RECIPE)}"}],
        }
    )
    layout.add_blob(config)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": descriptor(MEDIA_TYPE_CONFIG, config),
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": size,
                }
            ],
        }
    )
    layout.add_blob(manifest)
    layout.tag(PYTHON_BASE_TAG, descriptor(MEDIA_TYPE_MANIFEST, manifest))
