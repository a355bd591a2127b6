"""An image per base: each endpoint on the base it names, everything else written once, and
each base's dependencies built for the Python the base holds."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockyard_builder.build import build_version
from dockyard_builder.dependencies import DEPS_DIR
from dockyard_builder.image import BASE_NAME
from dockyard_builder.pythons import base_python, python_in_paths
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointFile, EndpointSpec, ImageInfo, Version
from dockyard_common.oci_layout import OciLayout
from tests.harness.archives import tar_gz
from tests.harness.registry import rootfs_layout, sha256_of
from tests.harness.wheels import make_wheel

APP = {"app.py": b"import tinydep\ndef app(environ, start_response): ...\n"}
MODEL = b"weights" * 512
CP = "{tag}-{tag}-manylinux2014_x86_64"


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """tinydep 1.0 for CPython 3.9, 3.12 and this machine's 3.11, each saying which it is."""
    house = tmp_path / "wheels"
    for tag in ("cp39", "cp311", "cp312"):
        make_wheel(house, "tinydep", "1.0", f"ANSWER = {tag!r}\n", CP.format(tag=tag))
    return house


def two_base_version() -> Version:
    model = EndpointFile(name="model", path="model.bin", digest=sha256_of(MODEL))
    return Version(
        owner="acme",
        project="demo",
        deployment="two",
        name="v1",
        code=CodeRef(blob="sha256:" + "0" * 64),
        targets=["local-eu"],
        endpoints=[
            EndpointSpec(name="greet", image="debian-python:local", wsgi="app:app"),
            EndpointSpec(name="predict", image="tf:local", wsgi="app:app", files=[model]),
        ],
    )


def build_two_bases(tmp_path: Path, wheelhouse: Path) -> tuple[BuilderSettings, ImageInfo]:
    # Debian's python3 says its version only through its files; the other image's config does.
    debian = rootfs_layout(
        tmp_path / "debian",
        [
            {
                "usr/bin/python3": "python3.9",
                "usr/bin/python3.9": b"\x7fELF",
                "usr/lib/python3.9/os.py": b"",
            }
        ],
    )
    tensorflow = rootfs_layout(
        tmp_path / "tf", [{"usr/local/bin/python3.12": b"\x7fELF"}], ["PYTHON_VERSION=3.12.4"]
    )
    settings = BuilderSettings(
        data_dir=tmp_path / "data",
        base_image_layouts={"debian-python:local": debian, "tf:local": tensorflow},
        pip_find_links=(str(wheelhouse),),
        pip_no_index=True,
        host_python_version="3.11",
    )
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    code = io.BytesIO(tar_gz({**APP, "requirements.txt": b"tinydep\n"}))
    image = build_version(two_base_version(), code, settings, {sha256_of(MODEL): model})
    return settings, image


def layer_file(layout: OciLayout, digest: str, name: str) -> bytes:
    with tarfile.open(layout.blob_path(digest)) as archive:
        member = archive.extractfile(name)
        assert member is not None, f"{name} is not in layer {digest}"
        return member.read()


def test_each_endpoint_runs_on_its_own_base_and_shares_every_other_layer(
    tmp_path: Path, wheelhouse: Path
) -> None:
    settings, image = build_two_bases(tmp_path, wheelhouse)
    layout = OciLayout(settings.images_dir)
    manifests = {name: layout.read_json(digest) for name, digest in image.endpoints.items()}
    layers = {name: [x["digest"] for x in m["layers"]] for name, m in manifests.items()}
    for endpoint, base_dir in (("greet", tmp_path / "debian"), ("predict", tmp_path / "tf")):
        base = OciLayout(base_dir)
        base_manifest = base.read_json(base.resolve("base")["digest"])  # type: ignore[index]
        assert layers[endpoint][0] == base_manifest["layers"][0]["digest"], endpoint
        config = layout.read_json(manifests[endpoint]["config"]["digest"])
        assert config["config"]["Labels"][BASE_NAME] == image.bases[endpoint]
    assert layers["greet"][0] != layers["predict"][0]
    by_role = {x.role: x.digest for x in image.layers}
    # Code and runner: one blob each, in both manifests.
    for role in ("code", "runner"):
        assert by_role[role] in layers["greet"] and by_role[role] in layers["predict"]
    assert by_role["file:predict/model"] in layers["predict"]
    assert image.bases == {"greet": "debian-python:local", "predict": "tf:local"}
    assert image.pythons == {"greet": "3.9", "predict": "3.12"}
    assert image.base_image is None and image.base_included
    assert BASE_NAME not in layout.read_json(image.digest)["annotations"]
    # Each layer is listed once, and the layout holds nothing else: no layer twice.
    digests = [x.digest for x in image.layers]
    assert len(digests) == len(set(digests))
    documents = {image.digest, *image.endpoints.values()}
    documents |= {m["config"]["digest"] for m in manifests.values()}
    stored = {f"sha256:{p.name}" for p in (settings.images_dir / "blobs" / "sha256").iterdir()}
    assert stored == set(digests) | documents


def test_each_base_gets_the_dependencies_of_its_own_python(
    tmp_path: Path, wheelhouse: Path
) -> None:
    settings, image = build_two_bases(tmp_path, wheelhouse)
    layout = OciLayout(settings.images_dir)
    answers = {}
    for endpoint, digest in image.endpoints.items():
        manifest_layers = {x["digest"] for x in layout.read_json(digest)["layers"]}
        (deps,) = [
            x for x in image.layers if x.role == "dependencies" and x.digest in manifest_layers
        ]
        answers[endpoint] = layer_file(layout, deps.digest, f"{DEPS_DIR}/tinydep/__init__.py")
    assert answers == {"greet": b"ANSWER = 'cp39'\n", "predict": b"ANSWER = 'cp312'\n"}
    assert "greet: base image debian-python:local" in image.notes[0]
    assert "Python 3.9 (read from its /usr/bin/python3 -> python3.9)" in image.notes[0]
    assert "Python 3.12 (read from PYTHON_VERSION in its config)" in image.notes[1]
    assert all("this machine's Python 3.11 on local targets" in note for note in image.notes)


def test_local_targets_get_a_wheelhouse_for_this_machines_python_in_no_manifest(
    tmp_path: Path, wheelhouse: Path
) -> None:
    settings, image = build_two_bases(tmp_path, wheelhouse)
    layout = OciLayout(settings.images_dir)
    (house,) = [x for x in image.layers if x.role.startswith("wheels:")]
    assert house.role == "wheels:3.11"
    for digest in image.endpoints.values():
        assert house.digest not in {x["digest"] for x in layout.read_json(digest)["layers"]}
    assert layer_file(layout, house.digest, "wheels/requirements.txt") == b"tinydep==1.0\n"
    wheel = "wheels/tinydep-1.0-cp311-cp311-manylinux2014_x86_64.whl"
    assert layer_file(layout, house.digest, wheel).startswith(b"PK")


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        # Debian: python3 links to the default interpreter, whatever else is there.
        (
            {
                "usr/bin/python3": "python3.11",
                "usr/bin/python3.9": None,
                "usr/bin/python3.11": None,
            },
            ("3.11", "/usr/bin/python3 -> python3.11"),
        ),
        # The official images: /usr/local first.
        (
            {"usr/local/bin/python3.10": None, "usr/bin/python3.9": None},
            ("3.10", "/usr/local/bin/python3.10"),
        ),
        ({"usr/bin/python3.8": None, "usr/bin/python3.12": None}, ("3.12", "/usr/bin/python3.12")),
        ({"usr/lib/python3.7/os.py": None}, ("3.7", "/usr/lib/python3.7/os.py")),
        ({"usr/bin/python2.7": None}, None),
        ({}, None),
    ],
)
def test_the_python_is_read_from_the_interpreter_the_image_holds(
    paths: dict[str, str | None], expected: tuple[str, str] | None
) -> None:
    assert python_in_paths(paths) == expected


def test_a_removed_interpreter_counts_for_nothing_and_the_tag_speaks_next(tmp_path: Path) -> None:
    directory = tmp_path / "base"
    rootfs_layout(directory, [{"usr/bin/python3.9": b""}, {"usr/bin/.wh.python3.9": b""}])
    settings = BuilderSettings(
        data_dir=tmp_path / "data", base_image_layouts={"python:3.8-slim": f"oci:{directory}:base"}
    )
    image = build_version(
        two_base_version().model_copy(
            update={"endpoints": [EndpointSpec(name="greet", image="python:3.8-slim", wsgi="a:b")]}
        ),
        io.BytesIO(tar_gz(APP)),
        settings,
    )
    assert image.pythons == {"greet": "3.8"}


def test_an_image_saying_nothing_of_its_python_gets_the_builders(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path)
    found = base_python("busybox:1", None, layout, tmp_path / "cache", "3.11")
    assert (found.version, found.found_by) == (
        "3.11",
        "the builder's own: the image says nothing of its Python",
    )


def test_two_base_pythons_taking_the_same_wheels_share_one_dependency_layer(
    tmp_path: Path,
) -> None:
    house = tmp_path / "wheels"
    make_wheel(house, "tinydep", "1.0", "ANSWER = 'any'\n")  # py3-none-any: any Python
    version = two_base_version().model_copy(
        update={
            "endpoints": [
                EndpointSpec(name="old", image="python:3.9", wsgi="app:app"),
                EndpointSpec(name="new", image="python:3.12", wsgi="app:app"),
            ]
        }
    )
    settings = BuilderSettings(
        data_dir=tmp_path / "data", pip_find_links=(str(house),), pip_no_index=True
    )
    code = io.BytesIO(tar_gz({**APP, "requirements.txt": b"tinydep\n"}))
    image = build_version(version, code, settings)
    assert image.pythons == {"old": "3.9", "new": "3.12"}
    (deps,) = [x for x in image.layers if x.role == "dependencies"]
    layout = OciLayout(settings.images_dir)
    for digest in image.endpoints.values():
        assert deps.digest in {x["digest"] for x in layout.read_json(digest)["layers"]}
