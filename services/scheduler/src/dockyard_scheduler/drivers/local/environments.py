"""A version's own Python environment on a local target, made from its image's wheelhouse.

Local targets run a replica on this machine's interpreter, never in the platform's own
environment: each version (each image manifest) gets a virtual environment of its own under
``<runtime>/envs/<digest>``, with ``pip``, reading the version's locked dependencies from a
shared environment installed offline from the wheelhouse layer the builder made for this
interpreter (role ``wheels:<python>``, in no manifest), once per wheelhouse. What a replica
installs at start goes into its own environment, never into the platform, the shared
dependencies or another version. A directory without its completion mark (a scheduler
killed midway) is made again.
"""

from __future__ import annotations

import ensurepip
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import uv

from dockyard_common import ImageInfo, PermanentError
from dockyard_common.oci_layout import BlobNotFound
from dockyard_scheduler.drivers.layouts import layout_of
from dockyard_scheduler.drivers.local.images import extract_layer

__all__ = [
    "HOST_PYTHON",
    "Environment",
    "ensure_environment",
    "interpreter",
    "site_packages",
    "uv_binary",
]

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
"""The Python local targets run, as the builder names a wheelhouse's (``3.11``)."""

_COMPLETE = ".dockyard-complete"
_REQUIREMENTS = "wheels/requirements.txt"


def interpreter() -> str:
    """This machine's Python (not the platform's virtual environment's)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def uv_binary() -> str:
    """The uv a replica finds on its PATH (the one installed with the platform)."""
    return str(uv.find_uv_bin())


@dataclass(frozen=True)
class Environment:
    """A version's environment, and the shared dependencies it reads (read-only to it)."""

    path: Path
    dependencies: Path | None


def ensure_environment(image: ImageInfo, manifest_digest: str, envs: Path) -> Environment:
    """The virtual environment of the version whose endpoint image is ``manifest_digest``.

    The version's locked dependencies are installed once per wheelhouse (what one set of
    requirements resolved to) under ``envs/shared/``, and each version's own environment
    reads them through a ``.pth`` file: a code-only change makes a new environment in a
    fraction of a second. What a replica installs goes into its own environment, ahead of
    the shared packages on ``sys.path``; the shared ones are read-only to it.

    Blocking (venvs and installs): run it in a worker thread, one call per version at a
    time. Raises :class:`PermanentError` with the installer's words when it fails.
    """
    house = next((x for x in image.layers if x.role == f"wheels:{HOST_PYTHON}"), None)
    shared = None
    if house is not None:
        shared = envs / "shared" / house.digest.removeprefix("sha256:")
        if not (shared / _COMPLETE).exists():
            _make_shared(image, house.digest, house.media_type, shared)
    env = envs / manifest_digest.removeprefix("sha256:")
    if not (env / _COMPLETE).exists():
        _make_own(env, shared)
    return Environment(env, shared)


def _make_shared(image: ImageInfo, digest: str, media_type: str, shared: Path) -> None:
    shutil.rmtree(shared, ignore_errors=True)
    shared.parent.mkdir(parents=True, exist_ok=True)
    _run([uv_binary(), "venv", "--quiet", "--python", interpreter(), str(shared)], "make a venv")
    wheels = shared.parent / f".wheels-{shared.name}"
    shutil.rmtree(wheels, ignore_errors=True)
    try:
        layout = layout_of(image.layout or image.reference)
        extract_layer(layout.blob_path(digest), media_type, wheels)
    except (BlobNotFound, OSError) as exc:
        raise PermanentError(f"the version's wheelhouse is unreadable: {exc}") from exc
    try:
        requirements = ["-r", str(wheels / _REQUIREMENTS)]
        _install(shared, ["--find-links", str(wheels / "wheels"), *requirements])
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    (shared / _COMPLETE).touch()


def _make_own(env: Path, shared: Path | None) -> None:
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    _run([uv_binary(), "venv", "--quiet", "--python", interpreter(), str(env)], "make a venv")
    # pip as python:3.x images have it, from the interpreter's own bundled wheel (offline).
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    _install(env, ["--find-links", str(bundled), "pip"])
    if shared is not None:
        (site_packages(env) / "_dockyard_dependencies.pth").write_text(f"{site_packages(shared)}\n")
        _link_scripts(shared, env)
    (env / _COMPLETE).touch()


def site_packages(env: Path) -> Path:
    """Where a venv of this interpreter keeps its packages."""
    return env / "lib" / f"python{HOST_PYTHON}" / "site-packages"


def _link_scripts(shared: Path, env: Path) -> None:
    """The shared packages' commands (``uvicorn``, ``streamlit``, ...) in the version's
    ``bin``, run by the version's Python, so that they see what the replica installs too.

    uv starts a command with ``#!<python>`` or, when that path is too long for a ``#!``
    line, with a ``/bin/sh`` trampoline naming it: either way its first lines name the
    shared Python, and only there is it replaced.
    """
    theirs = str(shared / "bin" / "python").encode()
    ours = str(env / "bin" / "python").encode()
    for script in (shared / "bin").iterdir():
        target = env / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        lines = script.read_bytes().split(b"\n")
        head = b"\n".join(lines[:3])
        if not lines[0].startswith(b"#!") or theirs not in head:
            continue
        target.write_bytes(b"\n".join([head.replace(theirs, ours), *lines[3:]]))
        target.chmod(0o755)


def _install(env: Path, args: list[str]) -> None:
    # Copies, not links into uv's cache: a replica that writes into a package file of its
    # environment changes its own copy only.
    command = [uv_binary(), "pip", "install", "--quiet", "--no-index", "--link-mode", "copy"]
    _run([*command, "--python", str(env / "bin" / "python"), *args], "install the dependencies")


def _run(command: list[str], what: str) -> None:
    environment = {**os.environ, "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"}
    done = subprocess.run(  # noqa: S603 - uv, with paths of ours
        command, capture_output=True, text=True, env=environment, check=False
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()[-2000:]
        raise PermanentError(f"could not {what} on {HOST_PYTHON}: {said}")
