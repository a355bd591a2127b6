"""Images for the container driver: a version's endpoint image made runnable by the engine.

Three ways in, each keyed by the endpoint's manifest digest so that it happens once per engine:

- a registry reference (``<registry>/<repo>@sha256:...``): the engine pulls the manifest by
  digest; the image's own config (Env, Cmd, WorkingDir) stands. Where the engine refuses
  (podman and a plain-HTTP registry it was not told about), skopeo copies it in instead.
- a complete image in an OCI layout (``oci:<dir>:<ref>``, base layers included): streamed to
  the engine as a ``docker save`` archive.
- an embedded build in an OCI layout, whose config only *names* its base image (the builder
  adds the app layers without fetching the base): the engine builds ``FROM <base>`` with each
  layer added in order, so the base must be in the engine (or pullable by it). The command,
  environment and working directory then come from the layout's config at container start.

The functions here block (:class:`ImageCache` runs them on the engine's threads). They reach
the engine only through :class:`~.engine.Engine`, whose errors they let pass; their own
failures (skopeo, the layout's files) are :class:`~dockyard_common.PermanentError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard_common import DockyardError, ImageInfo, PermanentError, get_logger
from dockyard_common.oci_layout import BlobNotFound, OciLayout
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.container.engine import Engine
from dockyard_scheduler.drivers.layouts import layout_of

__all__ = ["BASE_NAME", "IMAGE_REPOSITORY", "EngineImage", "ImageCache", "engine_image"]

IMAGE_REPOSITORY = "localhost/dockyard-endpoint"
"""Where images made from OCI layouts are tagged in the engine (tag: the manifest digest)."""

BASE_NAME = "org.opencontainers.image.base.name"

log = get_logger(__name__)


@dataclass(frozen=True)
class EngineImage:
    """An image the engine can run, and the runtime config to start it with.

    ``config`` is empty when the image's own config is complete (pulled or loaded whole).
    """

    reference: str
    config: dict[str, Any] = field(default_factory=dict)


class ImageCache:
    """One preparation per manifest digest, shared by every replica and target that needs it."""

    def __init__(self, engine: Engine, scratch: Path) -> None:
        self._engine = engine
        self._scratch = scratch
        self._made: dict[str, asyncio.Task[EngineImage]] = {}

    async def get(self, workload: Workload) -> EngineImage:
        """The engine image of a workload, made on first use (a failed try is tried again)."""
        task = self._made.get(workload.manifest_digest)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            image = workload.version.image
            if image is None:
                raise PermanentError(f"{workload.key} has no built image")
            task = asyncio.ensure_future(
                self._engine.call(
                    engine_image,
                    self._engine,
                    image,
                    workload.manifest_digest,
                    self._scratch,
                )
            )
            self._made[workload.manifest_digest] = task
        return await asyncio.shield(task)

    def pop(self, manifest_digest: str) -> asyncio.Task[EngineImage] | None:
        """Forget an image (made, or in the making); what it was, for the caller to remove."""
        return self._made.pop(manifest_digest, None)

    def cancel(self) -> None:
        """Stop waiting for images in the making (on shutdown)."""
        for task in self._made.values():
            task.cancel()


def engine_image(
    engine: Engine, image: ImageInfo, manifest_digest: str, scratch: Path
) -> EngineImage:
    """The engine's image of one endpoint, made there first if missing (blocking)."""
    if image.reference.startswith("oci:"):
        return _from_layout(engine, image, manifest_digest, scratch)
    reference = f"{_repository_of(image.reference)}@{manifest_digest}"
    copied = f"{IMAGE_REPOSITORY}:{manifest_digest.removeprefix('sha256:')}"
    if engine.has_image(reference):
        return EngineImage(reference)
    if engine.has_image(copied):
        return EngineImage(copied)
    refused = engine.pull(reference)
    if refused is None:
        return EngineImage(reference)
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise PermanentError(f"the container engine could not pull {reference}: {refused}")
    # podman refuses a plain-HTTP registry unless registries.conf names it (Docker allows
    # loopback ones): copy the image through a docker-save archive instead.
    log.info("container.image.pull.refused", reference=reference, reason=refused)
    with _scratch_work(scratch, f"copy {reference} through skopeo") as work:
        archive = Path(work) / "image.tar"
        command = [
            skopeo,
            "copy",
            "--quiet",
            f"--src-tls-verify={str(not _is_loopback(reference)).lower()}",
            f"docker://{reference}",
            f"docker-archive:{archive}:{copied}",
        ]
        try:
            copy = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
        except subprocess.TimeoutExpired as exc:
            raise PermanentError(f"skopeo did not copy {reference} within 600 s") from exc
        if copy.returncode != 0:
            raise PermanentError(
                f"the container engine could not pull {reference} ({refused}), nor could "
                f"skopeo copy it: {copy.stderr.strip()}"
            )
        with archive.open("rb") as stream:
            engine.load_image(stream, copied)
    return EngineImage(copied)


@contextlib.contextmanager
def _scratch_work(scratch: Path, doing: str) -> Iterator[str]:
    """A scratch directory for one preparation; a local file failing in it (a full disk, a
    missing layer blob) is a :class:`PermanentError` saying what was being done."""
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as work:
            yield work
    except DockyardError:
        raise
    except OSError as exc:
        raise PermanentError(f"could not {doing}: {exc}") from exc


def _is_loopback(reference: str) -> bool:
    host = reference.partition("/")[0].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _repository_of(reference: str) -> str:
    """``registry/repo`` from ``registry/repo@sha256:...`` or ``registry/repo:tag``."""
    name = reference.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.partition(":")[0]


def _from_layout(
    engine: Engine, image: ImageInfo, manifest_digest: str, scratch: Path
) -> EngineImage:
    layout = layout_of(image.reference)
    try:
        manifest = layout.read_json(manifest_digest)
        config = layout.read_json(manifest["config"]["digest"])
    except BlobNotFound as exc:
        raise PermanentError(f"image {manifest_digest} is not in {layout.root}: {exc}") from exc
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        raise PermanentError(
            f"cannot read image {manifest_digest} in {layout.root}: {exc}"
        ) from exc
    runtime = dict(config.get("config") or {})
    tag = f"{IMAGE_REPOSITORY}:{manifest_digest.removeprefix('sha256:')}"
    # The version's own layers (code, runner, files) are listed in ImageInfo; any other layer
    # of the manifest came from the base, which makes the image complete.
    own = {layer.digest for layer in image.layers if not layer.role.startswith("base")}
    complete = any(layer["digest"] not in own for layer in manifest["layers"])
    if engine.has_image(tag):
        return EngineImage(tag, {} if complete else runtime)
    if complete:
        _load_archive(engine, layout, manifest, config, tag, scratch)
        return EngineImage(tag)
    base = (runtime.get("Labels") or {}).get(BASE_NAME) or image.base_image
    if not base:
        raise PermanentError(
            f"image {manifest_digest} holds only the version's layers and names no base image "
            "to run them on; build it with a base image, or push complete images to a registry"
        )
    _ensure_base(engine, base)
    _compose(engine, layout, manifest, base, tag, scratch)
    return EngineImage(tag, runtime)


def _ensure_base(engine: Engine, base: str) -> None:
    """The base image is in the engine, or the engine pulls it; else a reason to act on."""
    if engine.has_image(base):
        return
    refused = engine.pull(base)
    if refused is not None:
        raise PermanentError(
            f"the image runs on base image {base!r}, which the container engine does not have "
            f"and could not pull ({refused}). Load the base into the engine "
            "(docker load / podman load), or use a registry that holds complete images"
        )


def _compose(
    engine: Engine,
    layout: OciLayout,
    manifest: dict[str, Any],
    base: str,
    tag: str,
    scratch: Path,
) -> None:
    """``FROM base`` plus the manifest's layers, in order, built and tagged by the engine."""
    names = []
    with (
        _scratch_work(scratch, f"put the layers of {tag} together") as work,
        tempfile.TemporaryFile(dir=work) as context,
    ):
        with tarfile.open(fileobj=context, mode="w") as tar:
            for number, layer in enumerate(manifest["layers"]):
                names.append(f"layer-{number}.tar")
                tar.add(layout.blob_path(layer["digest"]), arcname=names[-1])
            # ADD unpacks each local tar archive (compressed or not) at the destination, in
            # order: what applying layers without whiteouts does. One step, one commit:
            # buildah miscounts layers when it commits twice over a base without history.
            dockerfile = f"FROM {base}\nADD {' '.join(names)} /\n".encode()
            entry = tarfile.TarInfo("Dockerfile")
            entry.size = len(dockerfile)
            tar.addfile(entry, io.BytesIO(dockerfile))
        context.seek(0)
        engine.build_image(context, tag)


def _load_archive(
    engine: Engine,
    layout: OciLayout,
    manifest: dict[str, Any],
    config: dict[str, Any],
    tag: str,
    scratch: Path,
) -> None:
    """The image as a ``docker save`` archive (layers as stored), loaded under ``tag``."""
    config_name = f"{manifest['config']['digest'].removeprefix('sha256:')}.json"
    layers = [f"{layer['digest'].removeprefix('sha256:')}.tar" for layer in manifest["layers"]]
    index = [{"Config": config_name, "RepoTags": [tag], "Layers": layers}]
    with (
        _scratch_work(scratch, f"write the archive of {tag}") as work,
        tempfile.TemporaryFile(dir=work) as archive,
    ):
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name, layer in zip(layers, manifest["layers"], strict=True):
                tar.add(layout.blob_path(layer["digest"]), arcname=name)
            for name, document in ((config_name, config), ("manifest.json", index)):
                data = json.dumps(document).encode()
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
        archive.seek(0)
        engine.load_image(archive, tag)
