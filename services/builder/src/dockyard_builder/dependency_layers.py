"""The layers of a version's dependencies: one per base Python, and a wheelhouse.

- A *dependency layer* holds the packages installed for one base image's Python under
  :data:`~dockyard_builder.dependencies.DEPS_DIR` (on ``PYTHONPATH`` in the image, its
  ``bin`` on ``PATH``): what container and Kubernetes targets run. Its scripts
  (``uvicorn``, ``streamlit``) start the image's ``python3``, not the builder's interpreter
  that pip wrote into them.
- The *wheelhouse* holds, under :data:`WHEELS_DIR`, the wheels that meet the requirements
  for this machine's Python and a ``requirements.txt`` pinning exactly them: what local
  targets install into a version's own environment, offline
  (``uv pip install --no-index --find-links wheels -r wheels/requirements.txt``). It is in
  no image manifest (role ``wheels:<python>``).

Both are cached by what determines them (requirements, Python, platforms, index), so an
unchanged version's dependencies are neither downloaded nor written again.
"""

from __future__ import annotations

from pathlib import Path

from dockyard_builder.cache import LayerCache
from dockyard_builder.dependencies import (
    DEPS_DIR,
    DependencyTarget,
    PackageIndex,
    dependency_cache_key,
    download_wheels,
    install_dependencies,
)
from dockyard_builder.layers import LayerBlob, entries_from_directory, write_layer
from dockyard_builder.settings import BuilderSettings

__all__ = [
    "IMAGE_SHEBANG",
    "WHEELS_DIR",
    "dependency_layer",
    "portable_script",
    "wheelhouse_layer",
    "wheelhouse_role",
]

WHEELS_DIR = "wheels"
"""Where the wheelhouse layer holds its wheels and their ``requirements.txt``."""

_WHEELHOUSE_KEY = "wheelhouse"
_DEPS_KEY = f"{DEPS_DIR}:image-shebangs"
"""The cache's name of dependency layers whose scripts start the image's Python."""

IMAGE_SHEBANG = b"#!/usr/bin/env python3"
"""What a dependency script starts in the image: the Python on the image's ``PATH``."""

# pip writes its own interpreter's path, or, past the kernel's shebang length, a sh
# trampoline: #!/bin/sh, then '''exec' /long/path/python "$0" "$@", then ' '''.
_TRAMPOLINE = (b"#!/bin/sh\n'''exec' ", b"' '''\n")


def portable_script(content: bytes) -> bytes:
    """A console script pip installed, made to start the image's ``python3``; any other
    file as it is. Pure."""
    if content.startswith(_TRAMPOLINE[0]):
        end = content.find(_TRAMPOLINE[1])
        if end != -1 and b"python" in content[:end]:
            return IMAGE_SHEBANG + b"\n" + content[end + len(_TRAMPOLINE[1]) :]
        return content
    first, newline, rest = content.partition(b"\n")
    if first.startswith(b"#!") and b"python" in first and newline:
        return IMAGE_SHEBANG + b"\n" + rest
    return content


def _make_scripts_portable(installed: Path) -> None:
    scripts = installed / "bin"
    for script in sorted(scripts.iterdir()) if scripts.is_dir() else []:
        if script.is_file() and not script.is_symlink():
            content = script.read_bytes()
            portable = portable_script(content)
            if portable != content:
                script.write_bytes(portable)


def wheelhouse_role(python: str) -> str:
    """The layer role of the wheelhouse for ``python`` (``wheels:3.11``)."""
    return f"{WHEELS_DIR}:{python}"


def wheelhouse_layer(
    requirements: Path,
    python: str,
    settings: BuilderSettings,
    cache: LayerCache,
    work: Path,
) -> tuple[LayerBlob, Path | None]:
    """The wheelhouse for ``python``, and the directory of its wheels when just downloaded
    (None when it came from the cache); blocking."""
    target = DependencyTarget(python)
    key = dependency_cache_key(requirements.read_bytes(), target, settings.package_index)
    cached = cache.get(key, _WHEELHOUSE_KEY)
    if cached is not None:
        return cached, None
    house = work / f"wheels-{python}"
    wheels = house / WHEELS_DIR
    pins = download_wheels(
        requirements,
        wheels,
        target,
        settings.package_index,
        timeout_s=settings.pip_timeout_s,
        retries=settings.pip_retries,
    )
    (wheels / "requirements.txt").write_text("".join(f"{pin}\n" for pin in pins))
    # Wheels are zip files already: compressing them again costs time and saves nothing.
    layer = write_layer(
        entries_from_directory(wheels, WHEELS_DIR),
        work / f"wheels-{python}.layer",
        "none",
    )
    cache.put(key, _WHEELHOUSE_KEY, layer)
    return layer, wheels


def dependency_layer(
    requirements: Path,
    python: str,
    settings: BuilderSettings,
    cache: LayerCache,
    work: Path,
    wheels: Path | None = None,
) -> tuple[LayerBlob, bool]:
    """The packages installed for ``python`` (and whether the layer was just built); blocking.

    ``wheels``, a wheelhouse for the same Python, is installed from offline instead of the
    index: the packages are then downloaded once for both layers.
    """
    target = DependencyTarget(python)
    key = dependency_cache_key(requirements.read_bytes(), target, settings.package_index)
    cached = cache.get(key, _DEPS_KEY)
    if cached is not None:
        return cached, False
    index = (
        PackageIndex(find_links=(str(wheels),), no_index=True)
        if wheels is not None
        else settings.package_index
    )
    installed = work / f"dependencies-{python}"
    install_dependencies(
        requirements,
        installed,
        target,
        index,
        timeout_s=settings.pip_timeout_s,
        retries=settings.pip_retries,
    )
    _make_scripts_portable(installed)
    layer = write_layer(
        entries_from_directory(installed, DEPS_DIR), work / f"dependencies-{python}.layer", "gzip"
    )
    cache.put(key, _DEPS_KEY, layer)
    return layer, True
