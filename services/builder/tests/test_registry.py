"""Pushing version images to a real registry: complete, verified by skopeo, sent only once."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from dockyard_builder.base import RegistrySource
from dockyard_builder.build import build_version, push_version
from dockyard_builder.registry import RegistryClient, RegistryError
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointFile, EndpointSpec, ImageInfo, PermanentError, Version
from tests.harness.archives import tar_gz
from tests.harness.registry import (
    Registry,
    busybox_layout,
    push_with_skopeo,
    rootfs_layout,
    sha256_of,
)

APP = {"app.py": b"def app(environ, start_response): ...\n"}
MODEL = bytes(range(256)) * 4096  # 1 MiB


def a_version(base: str, name: str = "v1", deployment: str = "web") -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment=deployment,
        name=name,
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[
            EndpointSpec(
                name="predict",
                image=base,
                wsgi="app:app",
                files=[EndpointFile(name="model", path="model.bin", digest=sha256_of(MODEL))],
            )
        ],
    )


def build_and_push(
    tmp_path: Path,
    registry: Registry,
    version: Version,
    code: dict[str, bytes],
    chunk_bytes: int = 16 * 1024 * 1024,
) -> ImageInfo:
    settings = BuilderSettings(
        data_dir=tmp_path, registry_url=registry.url, registry_chunk_bytes=chunk_bytes
    )
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    client = RegistryClient(registry.url, chunk_bytes=chunk_bytes)
    registries = RegistrySource(clients={client.host: client})
    try:
        image = build_version(
            version, io.BytesIO(tar_gz(code)), settings, {sha256_of(MODEL): model}, None, registries
        )
        return push_version(image, version, settings, client)
    finally:
        registries.close()


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_pushed_image_is_complete_and_skopeo_rehashes_every_blob(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    image = build_and_push(tmp_path, registry, a_version(busybox_base), APP)
    assert image.reference.startswith(f"{registry.host}/dockyard/acme/demo/web@sha256:")
    assert image.base_included
    repository = image.reference.split("@")[0]
    inspected = json.loads(
        skopeo(
            "inspect", "--tls-verify=false", f"docker://{repository}@{image.endpoints['predict']}"
        )
    )
    assert len(inspected["Layers"]) == len(image.layers)
    assert image.layers[0].role == "base"
    config = json.loads(
        skopeo(
            "inspect",
            "--config",
            "--tls-verify=false",
            f"docker://{repository}@{image.endpoints['predict']}",
        )
    )
    env = config["config"]["Env"]
    assert "BASE=busybox" in env and "PATH=/bin" in env and "PORT=8000" in env
    # copy --all walks the index and re-hashes every blob it receives.
    skopeo(
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        f"docker://{repository}:v1",
        f"oci:{tmp_path / 'copy'}:v1",
    )


def test_a_rebuild_sends_only_the_changed_code(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    first = build_and_push(tmp_path, registry, a_version(busybox_base, deployment="rebuild"), APP)
    assert first.pushed_bytes is not None and first.pushed_bytes > len(MODEL)
    changed = {"app.py": APP["app.py"] + b"# v2\n"}
    second = build_and_push(
        tmp_path, registry, a_version(busybox_base, "v2", deployment="rebuild"), changed
    )
    code = next(x for x in second.layers if x.role == "code")
    # The new code layer plus configs and manifests; never the model or the base again.
    assert second.pushed_bytes is not None and second.pushed_bytes < code.size + 4096


def test_base_layers_are_mounted_from_the_base_repository_not_sent(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    image = build_and_push(tmp_path, registry, a_version(busybox_base, deployment="mounted"), APP)
    base_bytes = sum(x.size for x in image.layers if x.role == "base")
    app_bytes = sum(x.size for x in image.layers if x.role != "base")
    assert image.pushed_bytes is not None
    assert image.pushed_bytes < app_bytes + 8192 < base_bytes + app_bytes


def test_small_chunks_still_give_a_valid_image(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    image = build_and_push(
        tmp_path, registry, a_version(busybox_base, deployment="chunked"), APP, chunk_bytes=65536
    )
    repository = image.reference.split("@")[0]
    skopeo(
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        f"docker://{repository}:v1",
        f"oci:{tmp_path / 'copy'}:v1",
    )


def test_a_base_from_a_local_layout_makes_a_complete_image_without_a_registry(
    tmp_path: Path,
) -> None:
    base = busybox_layout(tmp_path / "base")
    settings = BuilderSettings(
        data_dir=tmp_path / "data", base_image_layouts={"busybox:local": f"oci:{base}:busybox"}
    )
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    version = a_version("busybox:local")
    image = build_version(version, io.BytesIO(tar_gz(APP)), settings, {sha256_of(MODEL): model})
    assert image.base_included
    assert not any("no registry" in note for note in image.notes)
    skopeo("copy", "--quiet", "--all", image.reference, f"oci:{tmp_path / 'copy'}:v1")


def test_an_unknown_base_image_fails_the_build_saying_which(
    tmp_path: Path, registry: Registry
) -> None:
    missing = f"{registry.host}/base/missing:1"
    with pytest.raises(PermanentError, match="base/missing"):
        build_and_push(tmp_path, registry, a_version(missing), APP)


def test_without_a_registry_the_image_names_its_base_and_says_where_it_runs(
    tmp_path: Path,
) -> None:
    settings = BuilderSettings(data_dir=tmp_path)
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    image = build_version(
        a_version("python:3.11-slim"),
        io.BytesIO(tar_gz(APP)),
        settings,
        {sha256_of(MODEL): model},
    )
    assert not image.base_included
    assert "base" not in {x.role for x in image.layers}
    assert "python:3.11-slim" in image.notes[0] and "this machine's Python" in image.notes[0]


def test_a_bearer_challenge_is_answered_with_a_token_and_credentials_stay_secret() -> None:
    """Unit test of the token dance against a scripted transport (no registry speaks it here)."""
    seen: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/token":
            assert request.headers["Authorization"].startswith("Basic ")
            assert request.url.params["scope"] == "repository:a/b:pull"
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("Authorization") != "Bearer t0k":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://reg.example/token",'
                    'service="reg",scope="repository:a/b:pull"'
                },
            )
        if request.url.path.endswith("/missing"):
            return httpx.Response(403, text="denied")
        return httpx.Response(200)

    client = RegistryClient(
        "https://reg.example",
        username="robot",
        password="s3cret-password",  # noqa: S106 - a made-up one, to check it never leaks
        transport=httpx.MockTransport(registry),
    )
    assert client.has_blob("a/b", "sha256:" + "1" * 64)
    blob = f"/v2/a/b/blobs/sha256:{'1' * 64}"
    assert [r.url.path for r in seen] == [blob, "/token", blob]
    with pytest.raises(RegistryError) as refused:
        client.get_manifest("a/b", "missing")
    assert "s3cret-password" not in str(refused.value) and "t0k" not in str(refused.value)


def test_a_base_from_an_unlisted_registry_or_a_version_image_is_refused(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    settings = BuilderSettings(data_dir=tmp_path, registry_url=registry.url)
    client = RegistryClient(registry.url)
    guarded = RegistrySource(
        clients={client.host: client}, private_prefix=(client.host, "dockyard")
    )
    code = io.BytesIO(tar_gz(APP))
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    files = {sha256_of(MODEL): model}
    try:
        with pytest.raises(PermanentError, match="is not one base images may come from"):
            build_version(a_version("10.0.0.5:8443/x:1"), code, settings, files, None, guarded)
        victim = f"{registry.host}/dockyard/acme/demo/web:v1"
        with pytest.raises(PermanentError, match="is a version image of this platform"):
            build_version(a_version(victim), code, settings, files, None, guarded)
    finally:
        guarded.close()


def test_two_bases_from_the_registry_make_two_complete_images_mounting_both_bases(
    tmp_path: Path, registry: Registry, busybox_base: str
) -> None:
    # Incompressible: sending this layer again would show in the bytes pushed.
    noise = b"".join(hashlib.sha256(bytes([n % 256, n // 256])).digest() for n in range(2048))
    layout = rootfs_layout(tmp_path / "other", [{"etc/other-base": noise}])
    other = f"{registry.host}/base/other:1"
    push_with_skopeo(Path(layout.removeprefix("oci:").rsplit(":", 1)[0]), "base", other)
    version = a_version(busybox_base, deployment="two-bases")
    second = EndpointSpec(name="other", image=other, wsgi="app:app")
    version = version.model_copy(update={"endpoints": [*version.endpoints, second]})
    image = build_and_push(tmp_path, registry, version, APP)
    assert image.bases == {"predict": busybox_base, "other": other}
    assert image.base_included and image.base_image is None
    repository = image.reference.split("@")[0]
    for endpoint, base in image.bases.items():
        inspected = json.loads(
            skopeo(
                "inspect",
                "--tls-verify=false",
                f"docker://{repository}@{image.endpoints[endpoint]}",
            )
        )
        base_layers = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{base}"))
        assert inspected["Layers"][: len(base_layers["Layers"])] == base_layers["Layers"]
    # Both bases' layers were mounted from their repositories, not sent again.
    base_bytes = sum(x.size for x in image.layers if x.role == "base")
    app_bytes = sum(x.size for x in image.layers if x.role != "base")
    assert image.pushed_bytes is not None
    assert image.pushed_bytes < app_bytes + 8192 < base_bytes + app_bytes
