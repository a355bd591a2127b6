"""A version's own Python environment on a local target, made from its image's wheelhouse.

Local targets run a replica on this machine's interpreter, never in the platform's own
environment: each version (each image manifest) gets a virtual environment of its own under
``<runtime>/envs/<digest>``, with ``pip`` and the version's locked dependencies, installed
offline from the wheelhouse layer the builder made for this interpreter (role
``wheels:<python>``, in no manifest). What a replica then installs at start goes there too,
never into the platform or another version. Made once per manifest; a directory without its
completion mark (a scheduler killed midway) is made again.
"""

from __future__ import annotations

import ensurepip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import uv

from dockyard_common import ImageInfo, PermanentError
from dockyard_common.oci_layout import BlobNotFound
from dockyard_scheduler.drivers.layouts import layout_of
from dockyard_scheduler.drivers.local.images import extract_layer

__all__ = ["HOST_PYTHON", "ensure_environment", "interpreter", "uv_binary"]

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


def ensure_environment(image: ImageInfo, manifest_digest: str, envs: Path) -> Path:
    """The virtual environment of the version whose endpoint image is ``manifest_digest``.

    Blocking (a venv and an install): run it in a worker thread, one call per directory at
    a time. Raises :class:`PermanentError` with the installer's words when it fails.
    """
    env = envs / manifest_digest.removeprefix("sha256:")
    if (env / _COMPLETE).exists():
        return env
    shutil.rmtree(env, ignore_errors=True)
    envs.mkdir(parents=True, exist_ok=True)
    _run([uv_binary(), "venv", "--quiet", "--python", interpreter(), str(env)], "make the venv")
    # pip as python:3.x images have it, from the interpreter's own bundled wheel (offline).
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    _install(env, ["--find-links", str(bundled), "pip"])
    house = [x for x in image.layers if x.role == f"wheels:{HOST_PYTHON}"]
    if house:
        wheels = envs / f".wheels-{env.name}"
        shutil.rmtree(wheels, ignore_errors=True)
        try:
            layout = layout_of(image.layout or image.reference)
            extract_layer(layout.blob_path(house[0].digest), house[0].media_type, wheels)
        except (BlobNotFound, OSError) as exc:
            raise PermanentError(f"the version's wheelhouse is unreadable: {exc}") from exc
        try:
            _install(
                env,
                ["--find-links", str(wheels / "wheels"), "-r", str(wheels / _REQUIREMENTS)],
            )
        finally:
            shutil.rmtree(wheels, ignore_errors=True)
    (env / _COMPLETE).touch()
    return env


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
