"""Building a version image: a valid OCI layout, reproducible to the byte, refusing bad code."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard_builder.build import build_version, version_ref_name
from dockyard_builder.layers import LayerEntry, write_layer
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointFile, EndpointSpec, ImageInfo, InvalidInput, Version
from dockyard_common.oci_layout import OciLayout
from tests.harness.archives import member, tar_gz

APP = {"app.py": b"def app(environ, start_response): ...\n", "pkg/model.txt": b"weights"}


def a_version(name: str = "v1") -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[
            EndpointSpec(name="predict", wsgi="app:app"),
            EndpointSpec.model_validate(
                {
                    "name": "shell",
                    "server-command": ["export A=1", "python -m http.server $PORT"],
                    "port": 9000,
                }
            ),
        ],
    )


def build(tmp_path: Path, files: dict[str, bytes], version: Version | None = None) -> ImageInfo:
    settings = BuilderSettings(data_dir=tmp_path)
    return build_version(version or a_version(), io.BytesIO(tar_gz(files)), settings)


def test_the_same_inputs_build_the_same_digest_byte_for_byte(tmp_path: Path) -> None:
    first = build(tmp_path / "one", APP)
    second = build(tmp_path / "two", APP)
    assert first.digest == second.digest
    assert first.layers == second.layers


def test_changing_the_code_changes_only_the_code_layer(tmp_path: Path) -> None:
    first = build(tmp_path, APP)
    second = build(tmp_path, {**APP, "app.py": b"# changed\n"})
    roles = {layer.role: layer.digest for layer in first.layers}
    changed = {layer.role: layer.digest for layer in second.layers}
    assert roles["runner"] == changed["runner"]
    assert roles["code"] != changed["code"]


def test_each_endpoint_gets_its_command_port_and_the_code_root(tmp_path: Path) -> None:
    image = build(tmp_path, APP)
    layout = OciLayout(tmp_path / "images")
    configs = {}
    for endpoint, digest in image.endpoints.items():
        manifest = layout.read_json(digest)
        configs[endpoint] = layout.read_json(manifest["config"]["digest"])["config"]
    assert configs["predict"]["Cmd"] == ["python", "-m", "dockyard_runner", "app:app"]
    assert configs["shell"]["Cmd"][:2] == ["sh", "-c"]
    assert configs["shell"]["Cmd"][-1] == "export A=1 && python -m http.server $PORT"
    assert configs["shell"]["ExposedPorts"] == {"9000/tcp": {}}
    assert configs["predict"]["WorkingDir"] == "/app"
    assert "PORT=8000" in configs["predict"]["Env"]
    assert configs["predict"]["Labels"]["org.opencontainers.image.base.name"] == "python:3.11-slim"


def test_layers_do_not_depend_on_file_times_or_owners(tmp_path: Path) -> None:
    source = tmp_path / "file.txt"
    source.write_bytes(b"same")
    first = write_layer([LayerEntry("app/file.txt", source)], tmp_path / "a", "gzip")
    source.touch()
    source.chmod(0o600)
    second = write_layer([LayerEntry("app/file.txt", source)], tmp_path / "b", "gzip")
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


@pytest.mark.parametrize(
    "hostile", [member("../escape"), member("/abs"), member("l", tarfile.SYMTYPE, "/etc/passwd")]
)
def test_a_hostile_archive_fails_the_build_and_tags_nothing(
    tmp_path: Path, hostile: tarfile.TarInfo
) -> None:
    settings = BuilderSettings(data_dir=tmp_path)
    with pytest.raises(InvalidInput):
        build_version(a_version(), io.BytesIO(tar_gz(APP, hostile=[hostile])), settings)
    layout = OciLayout(settings.images_dir)
    assert layout.resolve(version_ref_name(a_version())) is None


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_and_copies_the_image_rehashing_every_blob(tmp_path: Path) -> None:
    image = build(tmp_path, APP)
    reference = f"oci:{tmp_path / 'images'}:{version_ref_name(a_version())}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", reference], check=True, capture_output=True, text=True
    ).stdout
    assert len(json.loads(raw)["manifests"]) == 2
    copied = subprocess.run(
        ["skopeo", "copy", "--all", reference, f"oci:{tmp_path / 'copy'}:v1"],
        capture_output=True,
        text=True,
    )
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "copy" / "blobs" / "sha256" / image.digest.removeprefix("sha256:")).exists()


def test_an_unchanged_model_is_neither_needed_nor_written_again(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    digest = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    spec = EndpointSpec(
        name="predict",
        wsgi="app:app",
        files=[EndpointFile(name="model", path="models/m.bin", digest=digest)],
    )
    settings = BuilderSettings(data_dir=tmp_path / "data")
    version = a_version().model_copy(update={"endpoints": [spec]})
    first = build_version(version, io.BytesIO(tar_gz(APP)), settings, {digest: model})
    model.unlink()  # a rebuild must not need the model's bytes at all
    second = build_version(
        version.model_copy(update={"name": "v2"}),
        io.BytesIO(tar_gz({**APP, "app.py": b"# v2\n"})),
        settings,
        {},
    )
    by_role = {layer.role: layer.digest for layer in first.layers}
    again = {layer.role: layer.digest for layer in second.layers}
    assert again["file:predict/model"] == by_role["file:predict/model"]
    assert again["code"] != by_role["code"]
    # The size is known without the bytes too: read from the cached layer.
    assert first.file_sizes == second.file_sizes == {"predict/model": 7000}


@pytest.mark.parametrize(
    ("resources", "threads"),
    [({}, 4), ({"cpu": 2}, 8), ({"cpu": {"min": 1, "max": 4}}, 16), ({"cpu": 100}, 64)],
)
def test_the_wsgi_server_gets_four_threads_per_cpu_of_the_endpoint(
    tmp_path: Path, resources: dict[str, object], threads: int
) -> None:
    version = a_version().model_copy(
        update={"endpoints": [EndpointSpec(name="predict", wsgi="app:app", resources=resources)]}
    )
    image = build(tmp_path, APP, version)
    layout = OciLayout(tmp_path / "images")
    config = layout.read_json(layout.read_json(image.endpoints["predict"])["config"]["digest"])
    assert f"DOCKYARD_WSGI_THREADS={threads}" in config["config"]["Env"]
