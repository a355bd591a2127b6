"""The docker backend: a Dockerfile generated from the version, built on a Docker-compatible
engine, for code that needs ``RUN`` steps.

The build context is the same inputs the layer backend uses (code, endpoint files at their
paths, the runner); the Dockerfile copies them, runs the version's ``build.run`` steps and
installs its requirements file with pip inside the image (where source builds may run:
that is what the engine is for). The engine's image is then exported and written into the
builder's OCI layout as the shared layers of one manifest per endpoint, exactly as the
layer backend writes its images, so pushing, the index and the scheduler see no difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors

from dockyard_builder.build import (
    endpoint_bases,
    tag_version,
    unpack_code,
    version_ref_name,
)
from dockyard_builder.image import APP_DIR, BaseImage, endpoint_config, endpoint_manifest
from dockyard_builder.layers import LayerEntry, entries_from_directory, write_layer
from dockyard_builder.pythons import base_python
from dockyard_builder.requirements import find_requirements
from dockyard_builder.runner import RUNNER_DIR, runner_entries
from dockyard_builder.settings import BuilderSettings
from dockyard_common import ImageInfo, LayerInfo, PermanentError, TransientError, Version
from dockyard_common.oci_layout import OciLayout, descriptor

__all__ = ["build_on_engine", "dockerfile"]

_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
_BUILD_REPOSITORY = "dockyard-build"
_CHUNK = 1024 * 1024


def dockerfile(version: Version, base_image: str, requirements: str | None) -> str:
    """The Dockerfile of a version: copy the inputs, run its steps, install its requirements.

    Steps use the exec form with a JSON-encoded ``sh -c`` script, so that no step can
    change the meaning of the Dockerfile around it.
    """
    lines = [
        f"FROM {base_image}",
        f"COPY {RUNNER_DIR.split('/')[0]} /{RUNNER_DIR.split('/')[0]}",
        f"COPY {APP_DIR} /{APP_DIR}",
        f"WORKDIR /{APP_DIR}",
        f"ENV PYTHONPATH=/{RUNNER_DIR} PYTHONUNBUFFERED=1",
    ]
    for step in version.build.run:
        lines.append(f"RUN {json.dumps(['sh', '-c', step])}")
    if requirements is not None:
        install = f"python -m pip install --no-cache-dir -r {requirements}"
        lines.append(f"RUN {json.dumps(['sh', '-c', install])}")
    return "\n".join(lines) + "\n"


def _context(
    version: Version, code_root: Path, files: Mapping[str, Path], base_image: str, work: Path
) -> Path:
    """The build context as an uncompressed tar: Dockerfile, app/ (code and files), runner."""
    requirements = find_requirements(code_root)
    recipe = work / "Dockerfile"
    recipe.write_text(dockerfile(version, base_image, requirements.name if requirements else None))
    entries = [LayerEntry("Dockerfile", recipe), *runner_entries()]
    entries += entries_from_directory(code_root, APP_DIR)
    for spec in version.endpoints:
        for file in spec.files:
            source = files.get(str(file.source))
            if source is None:
                raise PermanentError(f"file {file.name!r} ({file.source}) was not fetched")
            entries.append(LayerEntry(f"{APP_DIR}/{file.path}", source))
    return write_layer(entries, work / "context.tar", "none").path


def _engine(settings: BuilderSettings) -> docker.DockerClient:
    """The engine's client; an engine that does not answer is retried, a missing one is not."""
    try:
        client = (
            docker.DockerClient(base_url=settings.docker_host, timeout=600)
            if settings.docker_host
            else docker.from_env(timeout=600)
        )
    except docker.errors.DockerException as exc:
        raise PermanentError(
            "the docker build backend needs a Docker-compatible engine and none is configured "
            f"(set DOCKYARD_DOCKER_HOST, or build with the default layers backend): {exc}"
        ) from exc
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        client.close()
        raise TransientError(f"the build engine does not answer: {exc}", delay=30.0) from exc
    return client


def _one_base(version: Version, settings: BuilderSettings) -> str:
    """The one base image of the version's endpoints: the engine builds one image."""
    named = sorted(set(endpoint_bases(version, settings).values()))
    if len(named) > 1:
        raise PermanentError(
            f"the endpoints name different base images ({', '.join(named)}); the docker "
            "build backend builds one image for them all: name one base, or build with the "
            "default layers backend, which builds an image per base"
        )
    return named[0]


def _check_base(base_image: str) -> None:
    """Refuse a base only this engine could know: another build's image, or an image id."""
    first = base_image.split("/")[0]
    if first == _BUILD_REPOSITORY or re.fullmatch(r"[0-9a-f]{12,64}(:.*)?", base_image):
        raise PermanentError(f"base image {base_image} is not an image name a registry serves")


def _base_layer_count(client: docker.DockerClient, base_image: str) -> int:
    """How many of the built image's layers are its base's (0 if the engine cannot say)."""
    try:
        layers = client.images.get(base_image).attrs.get("RootFS", {}).get("Layers") or []
    except docker.errors.DockerException:
        return 0
    return len(layers)


def _build(client: docker.DockerClient, context: Path, tag: str) -> str:
    """Build the context on the engine; the image id."""
    try:
        with context.open("rb") as stream:
            image, _ = client.images.build(
                fileobj=stream, custom_context=True, tag=tag, pull=False, rm=True, forcerm=True
            )
    except docker.errors.BuildError as exc:
        tail = deque((str(x.get("stream") or x.get("error") or "") for x in exc.build_log), 8)
        lines = "".join(tail).strip()
        raise PermanentError(f"the docker build failed: {exc.msg}\n{lines}") from exc
    except docker.errors.APIError as exc:
        if exc.is_client_error():
            raise PermanentError(f"the engine refused the build: {exc.explanation}") from exc
        raise TransientError(f"the engine failed the build: {exc}", delay=10.0) from exc
    if image.id is None:
        raise PermanentError("the engine built no image")
    image_id: str = image.id
    return image_id


def _export(
    client: docker.DockerClient, image_id: str, layout: OciLayout, work: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Copy the engine's image into the layout: its config and its layers' descriptors."""
    archive = work / "image.tar"
    with archive.open("wb") as out:
        for chunk in client.images.get(image_id).save(chunk_size=_CHUNK, named=False):
            out.write(chunk)
    with tarfile.open(archive) as saved:
        manifest = json.load(_member(saved, "manifest.json"))[0]
        config: dict[str, Any] = json.load(_member(saved, manifest["Config"]))
        layers = []
        for name in manifest["Layers"]:
            member = _member(saved, name)
            part = work / "layer.part"
            with part.open("wb") as out:
                while chunk := member.read(_CHUNK):
                    out.write(chunk)
            digest = _sha256(part)
            size = part.stat().st_size
            layout.add_blob_file(part, digest)
            layers.append({"mediaType": _LAYER_TAR, "digest": digest, "size": size})
    # Uncompressed, a layer's digest is its diff id: they must be the config's, in order.
    if [x["digest"] for x in layers] != config.get("rootfs", {}).get("diff_ids"):
        raise PermanentError("the engine exported layers that do not match its image config")
    return config, layers


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    extracted = archive.extractfile(name)
    if extracted is None:
        raise PermanentError(f"the engine's image export lacks {name}")
    return extracted


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def build_on_engine(
    version: Version,
    code: IO[bytes] | Path,
    settings: BuilderSettings,
    files: Mapping[str, Path] | None = None,
    commit: str | None = None,
) -> ImageInfo:
    """Build ``version`` on the engine and write it into the settings' layout; blocking."""
    started = time.perf_counter()
    base_image = _one_base(version, settings)
    layout = OciLayout(settings.images_dir)
    layout.ensure()
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    _check_base(base_image)
    client = _engine(settings)
    tag = f"{_BUILD_REPOSITORY}/{version_ref_name(version)}"
    try:
        with tempfile.TemporaryDirectory(dir=settings.work_dir) as scratch:
            work = Path(scratch)
            code_root = unpack_code(code, work, settings)
            context = _context(version, code_root, files or {}, base_image, work)
            image_id = _build(client, context, tag)
            config, layers = _export(client, image_id, layout, work)
            base_layers = _base_layer_count(client, base_image)
            # The tag goes, the layers stay for the engine's build cache: no later build can
            # name this version's image as its base.
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(tag, noprune=True)
    finally:
        client.close()
    # The engine's whole image stands where a base image would: its layers come first and its
    # environment is kept; each endpoint adds only its command and port.
    engine_image = BaseImage(name=base_image, digest=image_id, config=config, layers=layers)
    manifests: dict[str, bytes] = {}
    for spec in version.endpoints:
        spec_config = endpoint_config(
            version, spec, [], base_image, commit, [f"/{RUNNER_DIR}"], engine_image
        )
        layout.add_blob(spec_config)
        manifest = endpoint_manifest(
            version, spec, spec_config, [], base_image, commit, engine_image
        )
        layout.add_blob(manifest)
        manifests[spec.name] = manifest
    index = tag_version(layout, version, manifests, base_image, commit, engine_image)
    python = base_python(
        base_image,
        engine_image,
        layout,
        settings.base_python_cache_dir,
        settings.host_python_version,
    )
    reference = f"oci:{layout.root.resolve()}:{version_ref_name(version)}"
    return ImageInfo(
        reference=reference,
        layout=reference,
        digest=index["digest"],
        endpoints={name: descriptor("", m)["digest"] for name, m in manifests.items()},
        layers=[
            LayerInfo(
                digest=x["digest"],
                size=x["size"],
                media_type=x["mediaType"],
                role="base" if number < base_layers else "engine",
            )
            for number, x in enumerate(layers)
        ],
        base_image=base_image,
        base_included=True,
        bases=dict.fromkeys(manifests, base_image),
        pythons=dict.fromkeys(manifests, python.version),
        notes=[
            "built by the docker backend: reproducible only as far as its run steps are; "
            "local targets unpack the layers above the base and run them on this machine's "
            "Python, without what the run steps installed outside them"
        ],
        build_seconds=round(time.perf_counter() - started, 3),
    )
