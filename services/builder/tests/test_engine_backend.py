"""The docker backend: a generated Dockerfile built on a real engine (podman's Docker API)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from dockyard_builder.engine import build_on_engine, dockerfile
from dockyard_builder.runner import server_command
from dockyard_builder.settings import BuilderSettings
from dockyard_common import BuildSpec, CodeRef, EndpointSpec, PermanentError, Version
from dockyard_common.oci_layout import OciLayout
from dockyard_scheduler.drivers.local.images import unpack_image
from tests.harness.archives import tar_gz
from tests.harness.containers import engine_or_skip, ensure_image

BUSYBOX = Path("/bin/busybox")


def a_version(base: str, run: list[str]) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="engine",
        name="v1",
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        build=BuildSpec(backend="docker", run=run),
        endpoints=[
            EndpointSpec.model_validate(
                {"name": "web", "image": base, "server-command": "httpd -f -p $PORT"}
            ),
            EndpointSpec(name="predict", image=base, wsgi="app:app"),
        ],
    )


@pytest.fixture(scope="module")
def busybox_in_engine() -> str:
    client = engine_or_skip()
    try:
        return ensure_image(
            client,
            "localhost/dockyard-test-busybox:2",
            files={"/bin/busybox": BUSYBOX, "/bin/sh": BUSYBOX, "/bin/httpd": BUSYBOX},
            entrypoint=["/bin/sh"],
        )
    finally:
        client.close()


def settings_for(tmp_path: Path) -> BuilderSettings:
    return BuilderSettings(data_dir=tmp_path, docker_host=os.environ.get("DOCKER_HOST"))


def test_run_steps_can_never_escape_their_line() -> None:
    version = a_version("base:1", ['echo "a"\nFROM evil', "touch x"])
    recipe = dockerfile(version, "base:1", "requirements.txt").splitlines()
    assert recipe[-3] == 'RUN ["sh", "-c", "echo \\"a\\"\\nFROM evil"]'
    assert recipe[-1].startswith('RUN ["sh", "-c", "python -m pip install')
    assert sum(line.startswith("FROM ") for line in recipe) == 1


@pytest.mark.docker
def test_the_engine_runs_the_steps_and_each_endpoint_gets_its_command(
    tmp_path: Path, busybox_in_engine: str
) -> None:
    version = a_version(busybox_in_engine, ["echo built-by-engine > built.txt"])
    code = io.BytesIO(tar_gz({"app.py": b"def app(environ, start_response): ...\n"}))
    image = build_on_engine(version, code, settings_for(tmp_path / "data"))

    copied = subprocess.run(
        ["skopeo", "copy", "--quiet", "--all", image.reference, f"oci:{tmp_path / 'copy'}:v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    layout = OciLayout(tmp_path / "data" / "images")
    commands = {}
    for endpoint, digest in image.endpoints.items():
        config = layout.read_json(layout.read_json(digest)["config"]["digest"])["config"]
        commands[endpoint] = config["Cmd"]
    assert commands == {
        "web": server_command("httpd -f -p $PORT"),
        "predict": ["python", "-m", "dockyard_runner", "app:app"],
    }
    assert image.bases == {"web": busybox_in_engine, "predict": busybox_in_engine}
    unpacked = unpack_image(image, image.endpoints["web"], tmp_path / "unpacked")
    assert (unpacked.root / "app" / "built.txt").read_text() == "built-by-engine\n"
    assert (unpacked.root / "dockyard" / "runner" / "dockyard_runner.py").is_file()


@pytest.mark.docker
def test_a_failing_step_fails_the_build_with_its_output(
    tmp_path: Path, busybox_in_engine: str
) -> None:
    version = a_version(busybox_in_engine, ["echo about-to-fail && exit 3"])
    code = io.BytesIO(tar_gz({"app.py": b""}))
    with pytest.raises(PermanentError, match=r"(?s)docker build failed.*about-to-fail"):
        build_on_engine(version, code, settings_for(tmp_path))


@pytest.mark.parametrize("base", ["dockyard-build/acme/demo/web:v1", "0123456789abcdef0123"])
def test_a_base_only_the_engine_knows_is_refused(tmp_path: Path, base: str) -> None:
    version = a_version(base, ["true"])
    with pytest.raises(PermanentError, match="not an image name a registry serves"):
        build_on_engine(version, io.BytesIO(tar_gz({"app.py": b""})), settings_for(tmp_path))


def test_the_engine_builds_one_image_and_refuses_two_bases_saying_what_to_do(
    tmp_path: Path,
) -> None:
    version = a_version("base:1", ["true"])
    other = version.endpoints[1].model_copy(update={"image": "base:2"})
    version = version.model_copy(update={"endpoints": [version.endpoints[0], other]})
    with pytest.raises(PermanentError, match="default layers backend, which builds an image per"):
        build_on_engine(version, io.BytesIO(tar_gz({"app.py": b""})), settings_for(tmp_path))
