"""One build: a version's code archive in, an OCI index with one image per endpoint out.

Each endpoint's image is built on the base image its definition names (each distinct base
resolved once); the code, runner and file layers are written once and shared by every
manifest, and each distinct base Python gets a dependency layer of its own. The wheelhouse
for this machine's Python (local targets) is written beside them, in no manifest.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from dockyard_builder.base import RegistrySource, resolve_base
from dockyard_builder.cache import LayerCache
from dockyard_builder.dependencies import DEPS_DIR
from dockyard_builder.dependency_layers import dependency_layer, wheelhouse_layer, wheelhouse_role
from dockyard_builder.image import (
    APP_DIR,
    BaseImage,
    endpoint_config,
    endpoint_manifest,
    version_index,
)
from dockyard_builder.layers import (
    LayerBlob,
    LayerEntry,
    entries_from_directory,
    file_size_in_layer,
    write_layer,
)
from dockyard_builder.push import push_image
from dockyard_builder.pythons import BasePython, base_python
from dockyard_builder.registry import RegistryClient, parse_image_name
from dockyard_builder.requirements import DeclaredRequirements, declared_requirements
from dockyard_builder.runner import RUNNER_DIR, runner_entries
from dockyard_builder.settings import BuilderSettings
from dockyard_common import ImageInfo, InvalidInput, LayerInfo, PermanentError, TargetKind, Version
from dockyard_common.archives import ArchiveLimits, extract_archive
from dockyard_common.oci_layout import MEDIA_TYPE_INDEX, OciLayout, descriptor

__all__ = [
    "Progress",
    "build_version",
    "endpoint_bases",
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


def endpoint_bases(version: Version, settings: BuilderSettings) -> dict[str, str]:
    """The base image of each endpoint: the one it names, else the default. Pure."""
    return {e.name: e.image or settings.default_base_image for e in version.endpoints}


def build_version(
    version: Version,
    code: IO[bytes] | Path,
    settings: BuilderSettings,
    files: Mapping[str, Path] | None = None,
    commit: str | None = None,
    registries: RegistrySource | None = None,
    progress: Progress | None = None,
    kinds: frozenset[TargetKind] | None = None,
) -> ImageInfo:
    """Build ``version`` into the settings' image layout and tag it; blocking (use a thread).

    ``kinds`` are the kinds of its targets (None: not known, build for every kind): the
    host's wheelhouse is built only for local targets and the images' dependency layers
    only for container and Kubernetes ones, so that requirements one kind cannot meet never
    fail a version that does not run there.

    ``code`` is the tar.gz of the code, or a directory holding it (a git checkout whose
    ``commit`` is recorded). ``files`` maps each endpoint file's source (blob digest or URL)
    to a local copy of its bytes. Blobs land in the layout before the index is tagged, so
    an interrupted build leaves at most unreferenced blobs, never a tag pointing at a
    half-written image. ``progress`` hears of the bytes written. With ``registries`` (a
    registry is configured) or a base in a local layout, a base's layers come first and the
    image is complete; otherwise it holds the app layers only and names its base.
    """
    started = time.perf_counter()
    bases = endpoint_bases(version, settings)
    layout = OciLayout(settings.images_dir)
    layout.ensure()
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as scratch:
        work = Path(scratch)
        resolved: dict[str, BaseImage | None] = {}
        pythons: dict[str, BasePython] = {}
        for name in sorted(set(bases.values())):
            resolved[name] = resolve_base(
                name, layout, registries, work, settings.base_image_layouts
            )
            pythons[name] = base_python(
                name,
                resolved[name],
                layout,
                settings.base_python_cache_dir,
                settings.host_python_version,
            )
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
        declared = declared_requirements(code_root, work / "requirements")
        dependencies: dict[str, LayerBlob] = {}
        for_local = kinds is None or TargetKind.LOCAL in kinds
        for_images = kinds is None or bool(kinds - {TargetKind.LOCAL})
        if declared is not None:
            requirements = work / "requirements.txt"
            requirements.write_text(declared.text)
            host = settings.host_python_version
            downloaded: Path | None = None
            if for_local:
                wheels, downloaded = wheelhouse_layer(requirements, host, settings, cache, work)
                fresh += [wheels] if downloaded is not None else []
            image_pythons = {p.version for p in pythons.values()} if for_images else set()
            for python in sorted(image_pythons):
                layer, is_fresh = dependency_layer(
                    requirements,
                    python,
                    settings,
                    cache,
                    work,
                    downloaded if python == host else None,
                )
                dependencies[python] = layer
                built.append(("dependencies", layer))
                fresh += [layer] if is_fresh else []
            if for_local:
                built.append((wheelhouse_role(host), wheels))
        if not isinstance(code, Path):
            shutil.rmtree(code_root, ignore_errors=True)
        file_layers: dict[tuple[str, str], LayerBlob] = {}
        file_sizes: dict[str, int] = {}
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
                size = _file_size(pending.get(place), file_layers[place])
                if size is not None:
                    file_sizes[f"{spec.name}/{file.name}"] = size
        counter.finish()
        for blob in fresh:
            layout.add_blob_file(blob.path, blob.digest)

        manifests: dict[str, bytes] = {}
        for spec in version.endpoints:
            base_name = bases[spec.name]
            base = resolved[base_name]
            deps = dependencies.get(pythons[base_name].version)
            layers = [
                code_layer,
                runner,
                *([deps] if deps is not None else []),
                *(file_layers[(str(f.source), f.path)] for f in spec.files),
            ]
            python_path = [f"/{RUNNER_DIR}", *([f"/{DEPS_DIR}"] if deps is not None else [])]
            # The dependencies' scripts (uvicorn, streamlit) come first, as pip's would.
            bin_path = [f"/{DEPS_DIR}/bin"] if deps is not None else []
            config = endpoint_config(
                version, spec, layers, base_name, commit, python_path, base, bin_path
            )
            layout.add_blob(config)
            manifest = endpoint_manifest(version, spec, config, layers, base_name, commit, base)
            layout.add_blob(manifest)
            manifests[spec.name] = manifest
        shared = next(iter(resolved)) if len(resolved) == 1 else None
        index_descriptor = tag_version(
            layout, version, manifests, shared, commit, resolved[shared] if shared else None
        )

    reference = f"oci:{layout.root.resolve()}:{version_ref_name(version)}"
    included = all(base is not None for base in resolved.values())
    base_layers: dict[str, dict[str, Any]] = {}
    for base in resolved.values():
        for entry in base.layers if base is not None else []:
            base_layers.setdefault(entry["digest"], entry)
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
                for x in base_layers.values()
            ),
            *(
                LayerInfo(digest=blob.digest, size=blob.size, media_type=blob.media_type, role=role)
                # Two base Pythons taking the same pure-Python wheels get one layer.
                for role, blob in {(r, b.digest): (r, b) for r, b in built}.values()
            ),
        ],
        base_image=shared,
        base_included=included,
        bases=bases,
        pythons={endpoint: pythons[base].version for endpoint, base in bases.items()},
        file_sizes=file_sizes,
        notes=build_notes(
            bases, pythons, resolved, declared, settings.host_python_version, for_local, for_images
        ),
        build_seconds=round(time.perf_counter() - started, 3),
    )


def build_notes(
    bases: Mapping[str, str],
    pythons: Mapping[str, BasePython],
    resolved: Mapping[str, BaseImage | None],
    declared: DeclaredRequirements | None,
    host_python: str,
    for_local: bool = True,
    for_images: bool = True,
) -> list[str]:
    """What a user should know of the image: the Python each endpoint's dependencies are
    for, per target kind (of those the version runs on), and a base that is only named.
    Pure."""
    notes = []
    for base_name in sorted(set(bases.values())):
        endpoints = ", ".join(sorted(e for e, b in bases.items() if b == base_name))
        python = pythons[base_name]
        on_image = f"Python {python.version} ({python.found_by})"
        if declared is None:
            notes.append(
                f"{endpoints}: base image {base_name}, {on_image} on container and Kubernetes "
                f"targets, this machine's Python {host_python} on local targets; no "
                "dependencies declared"
            )
        else:
            where = [
                *([f"{on_image} on container and Kubernetes targets"] if for_images else []),
                *([f"this machine's Python {host_python} on local targets"] if for_local else []),
            ]
            notes.append(
                f"{endpoints}: base image {base_name}; the dependencies of {declared.source} "
                f"are built for {', and for '.join(where)}"
            )
    named_only = sorted(name for name, base in resolved.items() if base is None)
    if named_only:
        notes.append(
            f"no registry is configured: the image holds the app layers and names its base "
            f"{', '.join(named_only)}"
            + (
                f"; local targets run it on this machine's Python {host_python}"
                if for_local
                else ""
            )
        )
    return notes


def _file_size(source: Path | None, layer: LayerBlob) -> int | None:
    """An endpoint file's bytes: its local copy's, else the cached layer's header's."""
    return source.stat().st_size if source is not None else file_size_in_layer(layer)


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
    base_image: str | None,
    commit: str | None,
    base: BaseImage | None,
) -> dict[str, Any]:
    """Write the version's index over its endpoints' manifests and tag it; its descriptor.

    ``base_image`` is the base every endpoint shares (None when they differ: each manifest
    names its own). The tag goes last: until then the layout holds unreferenced blobs at most.
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
    layout = OciLayout(settings.images_dir)
    mount_from = _mountable_base_layers(image, layout, settings, client.host)
    started = time.perf_counter()
    pushed = push_image(
        layout,
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


def _mountable_base_layers(
    image: ImageInfo, layout: OciLayout, settings: BuilderSettings, host: str
) -> dict[str, str]:
    """Base layer digest → the repository of the same registry holding it (its base's)."""
    if not image.base_included:
        return {}
    base_digests = {x.digest for x in image.layers if x.role == "base"}
    mount_from: dict[str, str] = {}
    for endpoint, base_name in sorted(image.bases.items()):
        if base_name in settings.base_image_layouts or endpoint not in image.endpoints:
            continue
        base = parse_image_name(base_name)
        if base.host != host:
            continue
        for layer in layout.read_json(image.endpoints[endpoint])["layers"]:
            if layer["digest"] in base_digests:
                mount_from.setdefault(layer["digest"], base.repository)
    return mount_from


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
