"""Layer compression is a setting: zstd layers are reproducible, valid and run locally."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from dockyard_builder.build import build_version
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointFile, EndpointSpec, ImageInfo, Version
from dockyard_scheduler.drivers.local.images import unpack_image
from tests.harness.archives import tar_gz
from tests.harness.registry import sha256_of

MODEL = b"weights " * 100_000


def a_version() -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[
            EndpointSpec(
                name="predict",
                wsgi="app:app",
                files=[EndpointFile(name="model", path="m/model.bin", digest=sha256_of(MODEL))],
            )
        ],
    )


def build_zstd(data_dir: Path, model: Path) -> ImageInfo:
    settings = BuilderSettings(data_dir=data_dir, code_compression="zstd", file_compression="zstd")
    code = io.BytesIO(tar_gz({"app.py": b"def app(environ, start_response): ...\n"}))
    return build_version(a_version(), code, settings, {sha256_of(MODEL): model})


def test_zstd_layers_are_reproducible_valid_and_unpack_for_local_targets(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    first = build_zstd(tmp_path / "one", model)
    second = build_zstd(tmp_path / "two", model)
    assert first.digest == second.digest
    types = {x.role: x.media_type for x in first.layers}
    assert types["code"].endswith("+zstd") and types["file:predict/model"].endswith("+zstd")
    model_layer = next(x for x in first.layers if x.role == "file:predict/model")
    assert model_layer.size < len(MODEL) / 10  # repetitive bytes do compress

    copied = subprocess.run(
        ["skopeo", "copy", "--quiet", "--all", first.reference, f"oci:{tmp_path / 'copy'}:v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr

    unpacked = unpack_image(first, first.endpoints["predict"], tmp_path / "unpacked")
    assert (unpacked.root / "app" / "m" / "model.bin").read_bytes() == MODEL
