"""The dependency layer: requirements installed from wheels for the base image, built once."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockyard_builder.build import build_version
from dockyard_builder.dependencies import DEPS_DIR
from dockyard_builder.dependency_layers import IMAGE_SHEBANG, portable_script
from dockyard_builder.pythons import python_version_of
from dockyard_builder.requirements import checked_requirements
from dockyard_builder.settings import BuilderSettings
from dockyard_common import (
    CodeRef,
    EndpointSpec,
    ImageInfo,
    InvalidInput,
    PermanentError,
    TransientError,
    Version,
)
from dockyard_common.oci_layout import OciLayout
from tests.harness.archives import tar_gz
from tests.harness.wheels import make_wheel

APP = b"import tinydep\ndef app(environ, start_response): ...\n"


def a_version(name: str = "v1") -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
    )


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheels"
    make_wheel(house, "tinydep", "1.0", "ANSWER = 'one'\n")
    make_wheel(house, "tinydep", "2.0", "ANSWER = 'two'\n")
    return house


def offline(tmp_path: Path, wheelhouse: Path) -> BuilderSettings:
    return BuilderSettings(
        data_dir=tmp_path / "data", pip_find_links=[str(wheelhouse)], pip_no_index=True
    )


def build(settings: BuilderSettings, files: dict[str, bytes]) -> ImageInfo:
    return build_version(a_version(), io.BytesIO(tar_gz(files)), settings)


def layer_names(settings: BuilderSettings, image: ImageInfo, role: str) -> set[str]:
    layer = next(layer for layer in image.layers if layer.role == role)
    blob = OciLayout(settings.images_dir).blob_path(layer.digest)
    with tarfile.open(blob) as archive:
        return set(archive.getnames())


def config_env(settings: BuilderSettings, image: ImageInfo) -> list[str]:
    layout = OciLayout(settings.images_dir)
    manifest = layout.read_json(image.endpoints["predict"])
    env: list[str] = layout.read_json(manifest["config"]["digest"])["config"]["Env"]
    return env


def test_requirements_become_a_layer_on_the_python_path(tmp_path: Path, wheelhouse: Path) -> None:
    settings = offline(tmp_path, wheelhouse)
    image = build(settings, {"app.py": APP, "requirements.txt": b"tinydep==1.0\n"})
    assert f"{DEPS_DIR}/tinydep/__init__.py" in layer_names(settings, image, "dependencies")
    assert "PYTHONPATH=/dockyard/runner:/dockyard/deps" in config_env(settings, image)


def test_the_dependencies_scripts_are_on_the_path_and_start_the_images_python(
    tmp_path: Path,
) -> None:
    house = tmp_path / "wheels"
    make_wheel(
        house, "tinyserve", "1.0", "def main(): ...\n", scripts={"tinyserve": "tinyserve:main"}
    )
    settings = offline(tmp_path, house)
    image = build(settings, {"app.py": APP, "requirements.txt": b"tinyserve==1.0\n"})

    layer = next(layer for layer in image.layers if layer.role == "dependencies")
    with tarfile.open(OciLayout(settings.images_dir).blob_path(layer.digest)) as archive:
        script = archive.extractfile(f"{DEPS_DIR}/bin/tinyserve")
        assert script is not None
        first_line = script.read().splitlines()[0]
    # pip wrote the builder's own interpreter there, which no image has.
    assert first_line == IMAGE_SHEBANG
    path = next(item for item in config_env(settings, image) if item.startswith("PATH="))
    assert path.startswith(f"PATH=/{DEPS_DIR}/bin:/usr/local/sbin:"), path


TRAMPOLINE = b"#!/bin/sh\n'''exec' /a/very/long/path/bin/python3 \"$0\" \"$@\"\n' '''\n"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (b"#!/srv/builder/.venv/bin/python\nimport sys\n", IMAGE_SHEBANG + b"\nimport sys\n"),
        (TRAMPOLINE + b"import sys\n", IMAGE_SHEBANG + b"\nimport sys\n"),
        (b"#!/bin/sh\necho a shell script\n", b"#!/bin/sh\necho a shell script\n"),
        (b"\x7fELF binary", b"\x7fELF binary"),
    ],
)
def test_a_script_pip_wrote_is_made_to_start_the_images_python(
    written: bytes, expected: bytes
) -> None:
    assert portable_script(written) == expected


def test_requirements_deployment_wins_over_requirements(tmp_path: Path, wheelhouse: Path) -> None:
    settings = offline(tmp_path, wheelhouse)
    files = {
        "app.py": APP,
        "requirements.txt": b"tinydep==1.0\n",
        "requirements-deployment.txt": b"tinydep==2.0\n",
    }
    names = layer_names(settings, build(settings, files), "dependencies")
    assert f"{DEPS_DIR}/tinydep-2.0.dist-info/METADATA" in names


def test_unchanged_requirements_are_not_installed_again(tmp_path: Path, wheelhouse: Path) -> None:
    settings = offline(tmp_path, wheelhouse)
    first = build(settings, {"app.py": APP, "requirements.txt": b"tinydep==1.0\n"})
    # With the wheels gone, only the cache can give the second build its dependency layer.
    for wheel in wheelhouse.iterdir():
        wheel.unlink()
    second = build(settings, {"app.py": APP + b"# v2\n", "requirements.txt": b"tinydep==1.0\n"})
    deps = {
        image.digest: next(x for x in image.layers if x.role == "dependencies").digest
        for image in (first, second)
    }
    assert len(set(deps.values())) == 1
    assert first.digest != second.digest


def test_code_without_requirements_has_no_dependency_layer(tmp_path: Path) -> None:
    settings = BuilderSettings(data_dir=tmp_path)
    image = build(settings, {"app.py": APP})
    assert "dependencies" not in {layer.role for layer in image.layers}
    assert "PYTHONPATH=/dockyard/runner" in config_env(settings, image)


def test_a_requirement_without_a_wheel_fails_with_what_to_do(
    tmp_path: Path, wheelhouse: Path
) -> None:
    settings = offline(tmp_path, wheelhouse)
    with pytest.raises(PermanentError, match=r"(?s)cannot be installed from wheels.*tinydep==9.9"):
        build(settings, {"app.py": APP, "requirements.txt": b"tinydep==9.9\n"})
    assert OciLayout(settings.images_dir).resolve("acme/demo/web:v1") is None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("python:3.12-slim", "3.12"),
        ("docker.io/library/python:3.10", "3.10"),
        ("registry.local:5000/python:3.13-bookworm", "3.13"),
        ("debian:12", "3.11"),
    ],
)
def test_the_python_version_comes_from_the_base_image(image: str, expected: str) -> None:
    assert python_version_of(image, "3.11") == expected


@pytest.mark.parametrize(
    "line",
    [
        "-r other.txt",
        "--no-binary :all:",
        "-r /proc/self/environ",
        "--index-url http://10.0.0.1/simple",
        "--extra-index-url https://evil.example/simple",
        "-f ./wheels",
        "-e .",
        "./wheels/tinydep-1.0-py3-none-any.whl",
        "tinydep-1.0-py3-none-any.whl",
        "tinydep @ https://evil.example/tinydep.whl",
        "git+https://example.com/x.git",
    ],
)
def test_a_requirements_file_may_name_packages_only(
    tmp_path: Path, wheelhouse: Path, line: str
) -> None:
    settings = offline(tmp_path, wheelhouse)
    files = {"app.py": APP, "requirements.txt": f"tinydep==1.0\n{line}\n".encode()}
    with pytest.raises(InvalidInput, match=r"requirements.txt line 2: .* is not accepted"):
        build(settings, files)


def test_the_markers_uv_export_writes_are_accepted() -> None:
    text = (
        "annotated-doc==0.0.6 ; python_full_version == '3.10.*'\n"
        "colorama==0.4.6 ; sys_platform == 'win32' and platform_python_implementation != 'PyPy'\n"
    )
    assert checked_requirements(text, "uv.lock") == text


def test_names_extras_specifiers_markers_and_hashes_are_kept_one_per_line() -> None:
    text = (
        "# models\nnumpy>=1.24 # fast\nscikit-learn[alldeps] == 1.5.0 ; python_version >= '3.9'"
        "\nuvicorn \\\n  >=0.30\n\n"
    )
    assert checked_requirements(text, "requirements.txt") == (
        "numpy>=1.24\nscikit-learn[alldeps] == 1.5.0 ; python_version >= '3.9'\nuvicorn >=0.30\n"
    )


def test_pip_runs_without_the_builders_environment(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_REGISTRY_PASSWORD", "s3cret")
    monkeypatch.setenv("PIP_NO_BINARY", ":all:")  # would undo wheels-only if pip read it
    settings = offline(tmp_path, wheelhouse)
    image = build(settings, {"app.py": APP, "requirements.txt": b"tinydep==1.0\n"})
    assert "dependencies" in {layer.role for layer in image.layers}
    assert "s3cret" not in str(image.model_dump())


def test_an_index_that_does_not_answer_is_retried_not_failed(tmp_path: Path) -> None:
    # A closed port on loopback: pip retries, then gives up saying it could not connect.
    settings = BuilderSettings(
        data_dir=tmp_path, pip_index_url="http://127.0.0.1:9/simple", pip_retries=1
    )
    with pytest.raises(TransientError, match="did not answer"):
        build(settings, {"app.py": APP, "requirements.txt": b"tinydep==1.0\n"})


def test_a_pyproject_without_a_lock_gives_its_project_dependencies(
    tmp_path: Path, wheelhouse: Path
) -> None:
    settings = offline(tmp_path, wheelhouse)
    pyproject = b'[project]\nname = "app"\nversion = "1"\ndependencies = ["tinydep==2.0"]\n'
    image = build(settings, {"app.py": APP, "pyproject.toml": pyproject})
    assert f"{DEPS_DIR}/tinydep-2.0.dist-info/METADATA" in layer_names(
        settings, image, "dependencies"
    )
    assert any("the dependencies of pyproject.toml" in note for note in image.notes)


def test_a_pyproject_dependency_from_a_url_is_refused(tmp_path: Path, wheelhouse: Path) -> None:
    settings = offline(tmp_path, wheelhouse)
    pyproject = (
        b'[project]\nname = "app"\ndependencies = ["tinydep @ https://evil.example/t.whl"]\n'
    )
    with pytest.raises(InvalidInput, match=r"pyproject.toml .* is not accepted"):
        build(settings, {"app.py": APP, "pyproject.toml": pyproject})
