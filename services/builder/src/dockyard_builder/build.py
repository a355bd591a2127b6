"""One build: a version's code archive in, an OCI index with one image per endpoint out."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from dockyard_builder.base import RegistrySource, resolve_base
from dockyard_builder.cache import LayerCache
from dockyard_builder.dependencies import (
    DEPS_DIR,
    DependencyTarget,
    checked_requirements,
    dependency_cache_key,
    find_requirements,
    install_dependencies,
    python_version_of,
)
from dockyard_builder.image import (
    APP_DIR,
    BaseImage,
    endpoint_config,
    endpoint_manifest,
    version_index,
)
from dockyard_builder.layers import LayerBlob, LayerEntry, entries_from_directory, write_layer
from dockyard_builder.push import push_image
from dockyard_builder.registry import RegistryClient, parse_image_name
from dockyard_builder.runner import RUNNER_DIR, runner_entries
from dockyard_builder.settings import BuilderSettings
from dockyard_common import ImageInfo, InvalidInput, LayerInfo, PermanentError, Version
from dockyard_common.archives import ArchiveLimits, extract_archive
from dockyard_common.oci_layout import MEDIA_TYPE_INDEX, OciLayout, descriptor

__all__ = [
    "Progress",
    "base_image_of",
    "build_version",
    "push_version",
    "tag_version",
    "unpack_code",
    "version_ref_name",
]

Progress = Callable[[str, int, int], None]
"""Told ``(phase, bytes done, bytes total)`` as a build moves on; called from the build thread."""


def version_ref_name(version: Version) -> str:
    """The tag of a version's index in the layout: ``owner/project/deployment:version``."""
    return f"{version.owner}/{version.project}/{version.deployment}:{version.name}"


def build_version(
    version: Version,
    code: IO[bytes] | Path,
    settings: BuilderSettings,
    files: Mapping[str, Path] | None = None,
    commit: str | None = None,
    registries: RegistrySource | None = None,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build ``version`` into the settings' image layout and tag it; blocking (use a thread).

    ``code`` is the tar.gz of the code, or a directory holding it (a git checkout whose
    ``commit`` is recorded). ``files`` maps each endpoint file's source (blob digest or URL)
    to a local copy of its bytes. Every endpoint's image is the shared code and runner
    layers plus one layer per file of its own. Blobs land in the layout before the index is
    tagged, so an interrupted build leaves at most unreferenced blobs, never a tag pointing
    at a half-written image. ``progress`` hears of the bytes written. With ``registries`` (a
    registry is configured) or a base in a local layout, the base's layers come first and
    the image is complete; otherwise it holds the app layers only and names its base.
    """
    started = time.perf_counter()
    base_image = base_image_of(version, settings)
    layout = OciLayout(settings.images_dir)
    layout.ensure()
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as scratch:
        work = Path(scratch)
        base = resolve_base(base_image, layout, registries, work, settings.base_image_layouts)
        code_root = unpack_code(code, work, settings)
        cache = LayerCache(settings.layer_cache_dir, layout)
        code_entries = entries_from_directory(code_root, APP_DIR)
        pending = _files_to_write(version, cache, files or {})
        counter = _ByteCounter(
            "layers",
            sum(e.source.stat().st_size for e in code_entries if e.source)
            + sum(source.stat().st_size for source in pending.values()),
            progress,
        )
        code_layer = write_layer(
            code_entries, work / "code.layer", settings.code_compression, counter.add
        )
        runner = write_layer(runner_entries(), work / "runner.layer", "gzip")
        built: list[tuple[str, LayerBlob]] = [("code", code_layer), ("runner", runner)]
        fresh: list[LayerBlob] = [code_layer, runner]
        shared = [code_layer, runner]
        python_path = [f"/{RUNNER_DIR}"]
        python_version = _python_version(base, base_image, settings)
        dependencies = _dependency_layer(code_root, python_version, settings, cache, work)
        if dependencies is not None:
            layer, is_fresh = dependencies
            built.append(("dependencies", layer))
            shared.append(layer)
            python_path.append(f"/{DEPS_DIR}")
            if is_fresh:
                fresh.append(layer)
        if not isinstance(code, Path):
            shutil.rmtree(code_root, ignore_errors=True)
        file_layers: dict[tuple[str, str], LayerBlob] = {}
        for spec in version.endpoints:
            for file in spec.files:
                place = (str(file.source), file.path)
                if place not in file_layers:
                    cached = cache.get(file.digest, file.path) if file.digest else None
                    if cached is None:
                        # Weights barely compress; gzip would dominate the build (~35 MB/s).
                        cached = write_layer(
                            [LayerEntry(f"{APP_DIR}/{file.path}", pending[place])],
                            work / f"file-{len(file_layers)}.layer",
                            settings.file_compression,
                            counter.add,
                        )
                        fresh.append(cached)
                        if file.digest:
                            cache.put(file.digest, file.path, cached)
                    file_layers[place] = cached
                built.append((f"file:{spec.name}/{file.name}", file_layers[place]))
        counter.finish()
        for blob in fresh:
            layout.add_blob_file(blob.path, blob.digest)

        manifests: dict[str, bytes] = {}
        for spec in version.endpoints:
            layers = [*shared, *(file_layers[(str(f.source), f.path)] for f in spec.files)]
            config = endpoint_config(version, spec, layers, base_image, commit, python_path, base)
            layout.add_blob(config)
            manifest = endpoint_manifest(version, spec, config, layers, base_image, commit, base)
            layout.add_blob(manifest)
            manifests[spec.name] = manifest
        index_descriptor = tag_version(layout, version, manifests, base_image, commit, base)

    reference = f"oci:{layout.root.resolve()}:{version_ref_name(version)}"
    notes = []
    if base is None:
        notes.append(
            f"no registry is configured: the image holds the app layers and names its base "
            f"{base_image}; local targets run it on this machine's Python "
            f"{settings.host_python_version}"
        )
    return ImageInfo(
        reference=reference,
        layout=reference,
        digest=index_descriptor["digest"],
        endpoints={
            name: descriptor("", manifest)["digest"] for name, manifest in manifests.items()
        },
        layers=[
            *(
                LayerInfo(
                    digest=x["digest"], size=x["size"], media_type=x["mediaType"], role="base"
                )
                for x in (base.layers if base else [])
            ),
            *(
                LayerInfo(digest=blob.digest, size=blob.size, media_type=blob.media_type, role=role)
                for role, blob in built
            ),
        ],
        base_image=base_image,
        base_included=base is not None,
        notes=notes,
        build_seconds=round(time.perf_counter() - started, 3),
    )


def base_image_of(version: Version, settings: BuilderSettings) -> str:
    """The base image the version's endpoints name, or the default.

    A version is one image (its endpoints share every layer), so its endpoints may name one
    base image between them.
    """
    named = sorted({e.image for e in version.endpoints if e.image})
    if len(named) > 1:
        raise InvalidInput(
            f"the endpoints name different base images ({', '.join(named)}); a version has "
            "one image: name the same base for all, or deploy them as separate deployments"
        )
    return named[0] if named else settings.default_base_image


def _python_version(base: BaseImage | None, base_image: str, settings: BuilderSettings) -> str:
    """The base image's Python (its ``PYTHON_VERSION``, else its name's tag, else the host's)."""
    config = (base.config.get("config") or {}) if base is not None else {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        match = re.match(r"(\d+)\.(\d+)", value)
        if key == "PYTHON_VERSION" and match:
            return f"{match.group(1)}.{match.group(2)}"
    return python_version_of(base_image, settings.host_python_version)


def unpack_code(code: IO[bytes] | Path, work: Path, settings: BuilderSettings) -> Path:
    """The code's directory: ``code`` itself (a checkout), or the archive extracted in ``work``."""
    if isinstance(code, Path):
        _check_checkout(code, settings)
        return code
    code_root = work / "code"
    code_root.mkdir()
    limits = ArchiveLimits(max_members=settings.max_code_members, max_bytes=settings.max_code_bytes)
    extract_archive(code, code_root, limits)
    return code_root


def _check_checkout(root: Path, settings: BuilderSettings) -> None:
    """A git checkout gets the limits an uploaded archive gets: members and bytes."""
    size = 0
    for members, path in enumerate(root.rglob("*"), start=1):
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
        if members > settings.max_code_members or size > settings.max_code_bytes:
            raise InvalidInput(
                f"the code has more than {settings.max_code_members} files or "
                f"{settings.max_code_bytes} bytes"
            )


def tag_version(
    layout: OciLayout,
    version: Version,
    manifests: dict[str, bytes],
    base_image: str,
    commit: str | None,
    base: BaseImage | None,
) -> dict[str, Any]:
    """Write the version's index over its endpoints' manifests and tag it; its descriptor.

    The tag goes last: until then the layout holds unreferenced blobs at most.
    """
    index = version_index(version, manifests, base_image, commit, base)
    layout.add_blob(index)
    index_descriptor = descriptor(MEDIA_TYPE_INDEX, index)
    layout.tag(version_ref_name(version), index_descriptor)
    return index_descriptor


def push_version(
    image: ImageInfo,
    version: Version,
    settings: BuilderSettings,
    client: RegistryClient,
    progress: Progress | None = None,
) -> ImageInfo:
    """Push a built image from the layout to the registry; the image as the registry has it.

    Base layers already in another repository of the same registry are mounted, not sent.
    """
    mount_from: dict[str, str] = {}
    if image.base_included and image.base_image not in (None, *settings.base_image_layouts):
        base = parse_image_name(str(image.base_image))
        if base.host == client.host:
            mount_from = {x.digest: base.repository for x in image.layers if x.role == "base"}
    started = time.perf_counter()
    pushed = push_image(
        OciLayout(settings.images_dir),
        image.digest,
        client,
        settings.repository_of(version),
        version.name,
        mount_from,
        progress,
    )
    seconds = (image.build_seconds or 0.0) + time.perf_counter() - started
    return image.model_copy(
        update={
            "reference": pushed.reference,
            "pushed_bytes": pushed.uploaded_bytes,
            "build_seconds": round(seconds, 3),
        }
    )


def _dependency_layer(
    code_root: Path, python_version: str, settings: BuilderSettings, cache: LayerCache, work: Path
) -> tuple[LayerBlob, bool] | None:
    """The layer of the code's requirements (and whether it was just built); None if none."""
    found = find_requirements(code_root)
    if found is None:
        return None
    text = found.read_text(encoding="utf-8", errors="replace")
    requirements = work / "requirements.txt"
    requirements.write_text(checked_requirements(text, found.name))
    target = DependencyTarget(python_version)
    key = dependency_cache_key(requirements.read_bytes(), target, settings.package_index)
    cached = cache.get(key, DEPS_DIR)
    if cached is not None:
        return cached, False
    installed = work / "dependencies"
    install_dependencies(
        requirements,
        installed,
        target,
        settings.package_index,
        timeout_s=settings.pip_timeout_s,
        retries=settings.pip_retries,
    )
    layer = write_layer(
        entries_from_directory(installed, DEPS_DIR), work / "dependencies.layer", "gzip"
    )
    cache.put(key, DEPS_DIR, layer)
    return layer, True


def _files_to_write(
    version: Version, cache: LayerCache, files: Mapping[str, Path]
) -> dict[tuple[str, str], Path]:
    """The local copy of every (source, path) whose layer is not cached yet."""
    pending: dict[tuple[str, str], Path] = {}
    for spec in version.endpoints:
        for file in spec.files:
            place = (str(file.source), file.path)
            if place in pending or (file.digest and cache.get(file.digest, file.path)):
                continue
            source = files.get(str(file.source))
            if source is None:
                raise PermanentError(f"file {file.name!r} ({file.source}) was not fetched")
            pending[place] = source
    return pending


class _ByteCounter:
    """Adds up bytes for a progress report, telling ``progress`` of each step."""

    def __init__(self, phase: str, total: int, progress: Progress | None) -> None:
        self._phase = phase
        self._total = total
        self._done = 0
        self._progress = progress

    def add(self, count: int) -> None:
        self._done += count
        if self._progress is not None:
            self._progress(self._phase, min(self._done, self._total), self._total)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(self._phase, self._total, self._total)
