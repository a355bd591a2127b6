"""Dependencies for the Python each target runs, against the real PyPI: the image's for its
base's Python, a wheelhouse for this machine's (local targets), and uv projects' locks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import uv

from dockyard_builder.build import build_version
from dockyard_builder.dependencies import DEPS_DIR, unavailable_reason
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointSpec, ImageInfo, PermanentError, TargetKind, Version
from dockyard_common.oci_layout import OciLayout
from tests.harness.archives import tar_gz

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def a_version(image: str | None = None) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[EndpointSpec(name="predict", image=image, wsgi="app:app")],
    )


def build(tmp_path: Path, code: io.BytesIO | Path, image: str | None = None) -> ImageInfo:
    settings = BuilderSettings(data_dir=tmp_path / "data")
    return build_version(a_version(image), code, settings)


def uv_environment(home: Path, **extra: str) -> dict[str, str]:
    """uv's environment: nothing of this process's virtualenv, this machine's certificates."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "UV_CACHE_DIR": str(home / "uv-cache"),
        "UV_SYSTEM_CERTS": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        **extra,
    }


def install_wheelhouse(tmp_path: Path, image: ImageInfo) -> Path:
    """What a local target does: a fresh environment of this machine's Python, the
    wheelhouse installed into it offline; the environment's directory."""
    (house,) = [x for x in image.layers if x.role == f"wheels:{HOST_PYTHON}"]
    blob = OciLayout(tmp_path / "data" / "images").blob_path(house.digest)
    unpacked = tmp_path / "house"
    with tarfile.open(blob) as archive:
        archive.extractall(unpacked, filter="data")
    environment, home = tmp_path / "env", tmp_path / "home"
    home.mkdir()
    for command in (
        ["venv", "--quiet", "--python", sys.executable, str(environment)],
        [
            *("pip", "install", "--quiet", "--python", str(environment / "bin" / "python")),
            *("--no-index", "--find-links", str(unpacked / "wheels")),
            *("-r", str(unpacked / "wheels" / "requirements.txt")),
        ],
    ):
        done = subprocess.run(
            [uv.find_uv_bin(), *command],
            env=uv_environment(home, UV_OFFLINE="1"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    return environment


def test_an_old_python_image_gets_its_wheels_and_local_targets_get_ones_that_import(
    tmp_path: Path,
) -> None:
    code = io.BytesIO(tar_gz({"app.py": b"", "requirements.txt": b"numpy\n"}))
    image = build(tmp_path, code, "python:3.6")
    assert image.pythons == {"predict": "3.6"}
    (deps,) = [x for x in image.layers if x.role == "dependencies"]
    with tarfile.open(OciLayout(tmp_path / "data" / "images").blob_path(deps.digest)) as layer:
        names = layer.getnames()
    # The image's numpy is one for CPython 3.6 ...
    assert any(n.startswith(f"{DEPS_DIR}/numpy") and "cpython-36m" in n for n in names)
    # ... and this machine's environment gets one that imports here.
    environment = install_wheelhouse(tmp_path, image)
    imported = subprocess.run(
        [str(environment / "bin" / "python"), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert any(f"this machine's Python {HOST_PYTHON} on local targets" in n for n in image.notes)


def test_a_pin_without_a_wheel_for_the_python_fails_naming_package_pin_and_python(
    tmp_path: Path,
) -> None:
    # numpy 1.13.3 predates Python 3.11: no wheel, and its sdist needs an old toolchain.
    code = io.BytesIO(tar_gz({"app.py": b"", "requirements.txt": b"numpy==1.13.3\n"}))
    with pytest.raises(PermanentError) as failed:
        build(tmp_path, code, "python:3.11-slim")
    reason = str(failed.value)
    assert "numpy==1.13.3: no wheel of numpy ==1.13.3 for Python 3.11" in reason, reason
    assert "versions of numpy with one: " in reason
    assert OciLayout(tmp_path / "data" / "images").resolve("acme/demo/web:v1") is None


PIP_SAID = """\
ERROR: Ignored the following yanked versions: 2.4.0
ERROR: Could not find a version that satisfies the requirement numpy==1.13.3 (from versions: \
1.23.2, 1.23.3, 1.23.4, 2.4.5, 2.4.6)
ERROR: No matching distribution found for numpy==1.13.3
"""


def test_pips_answer_is_told_as_package_pin_interpreter_and_what_exists() -> None:
    assert unavailable_reason(PIP_SAID, "3.11") == (
        "numpy==1.13.3: no wheel of numpy ==1.13.3 for Python 3.11 on linux x86_64 (versions "
        "of numpy with one: 1.23.2, 1.23.3, 1.23.4, 2.4.5, 2.4.6); pin a version that "
        "publishes a wheel for Python 3.11, or name a base image whose Python has one"
    )
    nothing = PIP_SAID.replace("1.23.2, 1.23.3, 1.23.4, 2.4.5, 2.4.6", "none")
    assert "no version of numpy has one" in str(unavailable_reason(nothing, "3.6"))
    assert unavailable_reason("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES", "3.11") is None


UV_PROJECT = b"""\
[project]
name = "greeter"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["six>=1.16"]

[dependency-groups]
dev = ["iniconfig"]
"""


def test_a_uv_projects_locked_dependencies_are_installed_and_uv_run_needs_nothing_more(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_bytes(UV_PROJECT)
    (project / "app.py").write_text("import six\nprint('six', six.__version__)\n")
    home = tmp_path / "lock-home"
    home.mkdir()
    locked = subprocess.run(
        [uv.find_uv_bin(), "lock", "--python", sys.executable],
        cwd=project,
        env=uv_environment(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert locked.returncode == 0, locked.stderr
    image = build(tmp_path, project)
    (house,) = [x for x in image.layers if x.role == f"wheels:{HOST_PYTHON}"]
    blob = OciLayout(tmp_path / "data" / "images").blob_path(house.digest)
    with tarfile.open(blob) as archive:
        pins = archive.extractfile("wheels/requirements.txt").read().decode()  # type: ignore[union-attr]
    # The locked version of the project's dependency; not the dev group, not the project.
    assert pins.startswith("six==") and pins.count("\n") == 1, pins
    assert any("the dependencies of uv.lock" in note for note in image.notes)
    environment = install_wheelhouse(tmp_path, image)
    # What a local target sets: its environment, offline, without the dev group.
    ran = subprocess.run(
        [uv.find_uv_bin(), "run", "app.py"],
        cwd=project,
        env=uv_environment(
            tmp_path / "home",
            UV_PROJECT_ENVIRONMENT=str(environment),
            UV_OFFLINE="1",
            UV_NO_DEV="1",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("six "), ran.stdout
    assert not (project / ".venv").exists(), os.listdir(project)


def test_only_what_the_version_s_target_kinds_run_is_built(tmp_path: Path) -> None:
    # numpy 1.13.3 has wheels for CPython 3.6 and none for this machine's Python: a version
    # running only on container targets builds (and no wheelhouse is made for it), one
    # running on a local target cannot.
    code = tar_gz({"app.py": b"", "requirements.txt": b"numpy==1.13.3\n"})
    settings = BuilderSettings(data_dir=tmp_path / "data")
    version = a_version("python:3.6")
    image = build_version(
        version, io.BytesIO(code), settings, kinds=frozenset({TargetKind.CONTAINER})
    )
    roles = {layer.role for layer in image.layers}
    assert "dependencies" in roles and not any(r.startswith("wheels:") for r in roles)
    assert not any("local targets" in note for note in image.notes), image.notes
    with pytest.raises(
        PermanentError, match=f"no wheel of numpy ==1.13.3 for Python {HOST_PYTHON}"
    ):
        build_version(version, io.BytesIO(code), settings, kinds=frozenset({TargetKind.LOCAL}))
