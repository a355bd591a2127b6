"""The layers of a version's dependencies: one per base Python, and a wheelhouse.

- A *dependency layer* holds the packages installed for one base image's Python under
  :data:`~dockyard_builder.dependencies.DEPS_DIR` (on ``PYTHONPATH`` in the image): what
  container and Kubernetes targets run.
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

__all__ = ["WHEELS_DIR", "dependency_layer", "wheelhouse_layer", "wheelhouse_role"]

WHEELS_DIR = "wheels"
"""Where the wheelhouse layer holds its wheels and their ``requirements.txt``."""

_WHEELHOUSE_KEY = "wheelhouse"


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
    cached = cache.get(key, DEPS_DIR)
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
    layer = write_layer(
        entries_from_directory(installed, DEPS_DIR), work / f"dependencies-{python}.layer", "gzip"
    )
    cache.put(key, DEPS_DIR, layer)
    return layer, True
