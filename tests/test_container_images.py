"""The container driver runs images that arrive whole: an OCI layout with its base layers
(loaded into the engine), and a registry image (pulled by digest)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard_common import CodeRef, EndpointSpec, ImageInfo, LayerInfo, Target, TargetKind, Version
from dockyard_common.oci_layout import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    OciLayout,
    canonical_json,
    descriptor,
)
from dockyard_common.runtime.processes import free_port
from dockyard_platform.servers import wait_for_port
from dockyard_scheduler.desired import Workload, desired_workloads
from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.drivers.container.images import IMAGE_REPOSITORY
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.containers import engine_or_skip
from tests.test_container_target import Reports, _get, _ready

LAYER = "application/vnd.oci.image.layer.v1.tar"


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed layer of ``files`` (path → (content, mode)), parents included."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = sorted({str(Path(p).parent) for p in files} - {"."})
        for directory in directories:
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        for path, (content, mode) in files.items():
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode = len(content), mode
            tar.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


def complete_image(root: Path) -> tuple[ImageInfo, str]:
    """A one-endpoint image with its base in the layout: busybox, then the app layer."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("no /bin/busybox to make a base layer from: apt-get install busybox-static")
    binary = busybox.read_bytes()
    base = _tar({"bin/busybox": (binary, 0o755), "bin/sh": (binary, 0o755)})
    app = _tar({"app/www/index.html": (b"a complete image\n", 0o644)})
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "PORT=8000"],
                "Cmd": ["sh", "-c", "busybox httpd -f -p $PORT -h /app/www"],
                "WorkingDir": "/app",
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": [descriptor(LAYER, layer)["digest"] for layer in (base, app)],
            },
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": descriptor(MEDIA_TYPE_CONFIG, config),
            "layers": [descriptor(LAYER, layer) for layer in (base, app)],
        }
    )
    layout = OciLayout(root)
    layout.ensure()
    for blob in (base, app, config, manifest):
        layout.add_blob(blob)
    entry = descriptor(MEDIA_TYPE_MANIFEST, manifest)
    layout.tag("complete", entry)
    app_layer = descriptor(LAYER, app)
    image = ImageInfo(
        reference=f"oci:{root}:complete",
        digest=entry["digest"],
        endpoints={"web": entry["digest"]},
        layers=[
            LayerInfo(digest=app_layer["digest"], size=len(app), media_type=LAYER, role="code")
        ],
    )
    return image, entry["digest"]


def _workload(image: ImageInfo) -> Workload:
    version = Version(
        owner="acme",
        project="demo",
        deployment="images",
        name="v1",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[EndpointSpec.model_validate({"name": "web", "server-command": "unused"})],
        targets=["box"],
        image=image,
    )
    target = Target(name="box", region="box", kind=TargetKind.CONTAINER, address="127.0.3.2")
    return desired_workloads(version, {"box": target})[0][0]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain-HTTP registry on a loopback port (Debian's docker-registry); its host:port."""
    binary = shutil.which("docker-registry")
    if binary is None or shutil.which("skopeo") is None:
        pytest.skip("needs docker-registry and skopeo: apt-get install docker-registry skopeo")
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        host, port = address.split(":")
        wait_for_port(host, int(port), 10.0, process)
        yield address
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def engine() -> Any:
    client = engine_or_skip()
    yield client
    client.close()


@pytest.mark.docker
async def test_an_oci_layout_with_its_base_is_loaded_whole_and_serves(
    tmp_path: Path, engine: Any
) -> None:
    image, manifest_digest = complete_image(tmp_path / "layout")
    tag = f"{IMAGE_REPOSITORY}:{manifest_digest.removeprefix('sha256:')}"
    reports = Reports()
    driver = ContainerDriver(
        SchedulerSettings(data_dir=tmp_path / "s", readiness_timeout_s=5), reports
    )
    try:
        await driver.ensure(_workload(image))
        ready = await reports.wait_for("ready", _ready)

        assert await asyncio.to_thread(_get, f"{ready.upstreams[0]}/index.html") == (
            "a complete image\n"
        )
        loaded = engine.images.get(tag)
        assert len(loaded.attrs["RootFS"]["Layers"]) == 2, "the base was not loaded with the app"
    finally:
        await driver.close()
        engine.images.remove(tag, force=True)


@pytest.mark.docker
async def test_a_registry_image_is_pulled_by_digest_and_serves(
    tmp_path: Path, engine: Any, registry: str
) -> None:
    image, manifest_digest = complete_image(tmp_path / "layout")
    repository = f"{registry}/acme/images-{secrets.token_hex(3)}"
    push = [
        *("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"),
        *(f"oci:{tmp_path / 'layout'}:complete", f"docker://{repository}:v1"),
    ]
    pushed = await asyncio.to_thread(
        subprocess.run, push, capture_output=True, text=True, check=False, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr
    in_registry = image.model_copy(update={"reference": f"{repository}@{manifest_digest}"})
    reports = Reports()
    settings = SchedulerSettings(data_dir=tmp_path / "s", readiness_timeout_s=5)
    driver = ContainerDriver(settings, reports)
    try:
        await driver.ensure(_workload(in_registry))
        ready = await reports.wait_for("ready", _ready)

        served = await asyncio.to_thread(_get, f"{ready.upstreams[0]}/index.html")
        assert served == "a complete image\n"
    finally:
        await driver.close()
        for tag in (f"{IMAGE_REPOSITORY}:{manifest_digest.removeprefix('sha256:')}",):
            with contextlib.suppress(Exception):
                engine.images.remove(tag, force=True)
