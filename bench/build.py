"""Building: a version with a 100 MB and a 1 GB model, against podman and buildah, and the floor.

Prints, in one run, per model size: the first build, a rebuild with only the code changed
(the model's layer must come from the cache: zero model bytes written) and a rebuild with
nothing changed, with Dockyard's builder and with ``podman build`` / ``buildah bud`` of the
equivalent Dockerfile (the model copied before the code, as a user who knows layer caching
writes it; the first build without cache), and the floor (sha256 + write of the same
bytes). Measures ``build_version`` itself, with the model already on local disk: fetching
it from the object store is not included (say so when quoting the figures). Then, for the
first size, the same with a push to a real registry (Debian's docker-registry on loopback, the base
image a small busybox already in that registry): the first push, and the rebuild's push,
whose uploaded bytes must not include the model. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests.harness

from dockyard_builder.base import RegistrySource
from dockyard_builder.build import build_version, push_version
from dockyard_builder.registry import RegistryClient
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointFile, EndpointSpec, Version
from tests.harness.registry import busybox_layout, push_with_skopeo, run_registry

CODE = b"def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"


def code_archive(extra: bytes) -> bytes:
    """A small code tar.gz (``extra`` changes it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in (("app.py", CODE), ("version.txt", extra)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def floor_seconds(model: Path, dest: Path) -> float:
    """sha256 of the model plus writing its bytes once: the least any build must do."""
    started = time.perf_counter()
    hasher = hashlib.sha256()
    with model.open("rb") as source, dest.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            hasher.update(chunk)
            out.write(chunk)
        # No fsync: the build does not sync either (the page cache takes both writes).
    elapsed = time.perf_counter() - started
    dest.unlink()
    return elapsed


def layout_bytes(images: Path) -> int:
    """Bytes of every blob in the layout."""
    return sum(p.stat().st_size for p in (images / "blobs" / "sha256").glob("*"))


def push_figures(
    work: Path, model: Path, digest: str, endpoint: EndpointSpec, runs: int
) -> dict[str, Any]:
    """Build and push, then rebuild with new code and push: medians, and the bytes sent."""
    builds, rebuilds, uploaded = [], [], []
    model_layer = 0
    (work / "registry-root").mkdir()
    with run_registry(work / "registry-root") as registry:
        base_name = f"{registry.host}/base/busybox:1"
        push_with_skopeo(busybox_layout(work / "busybox"), "busybox", base_name)
        with_base = endpoint.model_copy(update={"image": base_name})
        for run in range(runs):
            settings = BuilderSettings(data_dir=work / f"push-{run}", registry_url=registry.url)
            client = RegistryClient(registry.url)
            registries = RegistrySource(clients={client.host: client})
            version = Version(
                owner="bench",
                project="demo",
                deployment=f"push{run}",
                name="v1",
                code=CodeRef(blob="sha256:" + "0" * 64),
                endpoints=[with_base],
                targets=["local-eu"],
            )
            try:
                started = time.perf_counter()
                image = build_version(
                    version,
                    io.BytesIO(code_archive(b"1")),
                    settings,
                    {digest: model},
                    registries=registries,
                )
                push_version(image, version, settings, client)
                builds.append(time.perf_counter() - started)
                model_layer = next(x.size for x in image.layers if x.role.startswith("file:"))
                second = version.model_copy(update={"name": "v2"})
                started = time.perf_counter()
                image = build_version(
                    second,
                    io.BytesIO(code_archive(b"2")),
                    settings,
                    {digest: model},
                    registries=registries,
                )
                pushed = push_version(image, second, settings, client)
                rebuilds.append(time.perf_counter() - started)
                uploaded.append(pushed.pushed_bytes or 0)
            finally:
                registries.close()
    return {
        "registry": "docker-registry on loopback",
        "push_build_s": statistics.median(builds),
        "push_rebuild_s": statistics.median(rebuilds),
        "rebuild_uploaded_bytes": max(uploaded),
        "model_layer": model_layer,
        "model_reuploaded": max(uploaded) >= model_layer,
    }


PEER_DOCKERFILE = """\
FROM scratch
COPY model.bin /app/models/model.bin
COPY app/ /app/
"""
"""What a user writes for the same image: the model first, so a code change reuses its layer."""


def peer_tools() -> dict[str, list[str]]:
    """The image builders installed here: ``podman build`` and ``buildah bud``."""
    tools = {}
    if shutil.which("podman"):
        tools["podman"] = ["podman", "build", "--layers", "-q"]
    if shutil.which("buildah"):
        tools["buildah"] = ["buildah", "bud", "--layers", "-q"]
    return tools


def peer_figures(work: Path, model: Path, runs: int) -> dict[str, dict[str, float]]:
    """First build (no cache), code-only rebuild and no-change rebuild of the same image with
    each peer, medians over ``runs``."""
    context = work / "peer-context"
    (context / "app").mkdir(parents=True)
    os.link(model, context / "model.bin")  # the same bytes, not copied
    (context / "Dockerfile").write_text(PEER_DOCKERFILE)
    figures = {}
    for tool, command in peer_tools().items():
        timings: dict[str, list[float]] = {"first_s": [], "code_s": [], "same_s": []}
        for run in range(runs):
            tag = f"localhost/dockyard-bench-build-{tool}-{run}"
            for phase, code, extra in (
                ("first_s", b"1", ["--no-cache"]),
                ("code_s", b"2", []),
                ("same_s", b"2", []),
            ):
                (context / "app" / "app.py").write_bytes(CODE)
                (context / "app" / "version.txt").write_bytes(code)
                started = time.perf_counter()
                subprocess.run(
                    [*command, *extra, "-t", tag, str(context)], check=True, capture_output=True
                )
                timings[phase].append(time.perf_counter() - started)
            subprocess.run([tool, "rmi", "-f", tag], capture_output=True, check=False)
        figures[tool] = {phase: statistics.median(values) for phase, values in timings.items()}
    return figures


def dockyard_figures(work: Path, model: Path, runs: int) -> dict[str, Any]:
    """First build, code-only rebuild and no-change rebuild with the builder, and the floor;
    medians over ``runs``, and the model bytes a code-only rebuild wrote (goal: none)."""
    digest = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    endpoint = EndpointSpec(
        name="predict",
        wsgi="app:app",
        files=[EndpointFile(name="model", path="models/model.bin", digest=digest)],
    )
    timings: dict[str, list[float]] = {"first_s": [], "code_s": [], "same_s": [], "floor_s": []}
    model_bytes = []
    for run in range(runs):
        settings = BuilderSettings(data_dir=work / f"data-{model.stat().st_size}-{run}")
        version = Version(
            owner="bench",
            project="demo",
            deployment="web",
            name="v1",
            code=CodeRef(blob="sha256:" + "0" * 64),
            endpoints=[endpoint],
            targets=["local-eu"],
        )
        timings["floor_s"].append(floor_seconds(model, work / "floor.bin"))
        before = 0
        for phase, name, code in (
            ("first_s", "v1", b"1"),
            ("code_s", "v2", b"2"),
            ("same_s", "v3", b"2"),
        ):
            before = layout_bytes(settings.images_dir) if phase != "first_s" else 0
            started = time.perf_counter()
            built = build_version(
                version.model_copy(update={"name": name}),
                io.BytesIO(code_archive(code)),
                settings,
                {digest: model},
            )
            timings[phase].append(time.perf_counter() - started)
            if phase == "code_s":
                written = layout_bytes(settings.images_dir) - before
                layer = next(x for x in built.layers if x.role.startswith("file:"))
                # A rewritten model layer would show here as about the model's size.
                model_bytes.append(written if written >= layer.size else 0)
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    figures: dict[str, Any] = {k: statistics.median(v) for k, v in timings.items()}
    figures["code_model_bytes_written"] = max(model_bytes)
    return figures


def main() -> int:
    """Run the benchmark; print the figures and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mb", type=int, nargs="+", default=[100, 1024])
    parser.add_argument("--runs", type=int, default=5, help="repetitions; medians reported")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    push: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-build-") as scratch:
        work = Path(scratch)
        for size in args.model_mb:
            model = work / f"model-{size}.bin"
            with model.open("wb") as out:  # weights do not compress: random bytes
                for _ in range(size):
                    out.write(os.urandom(1024 * 1024))
            ours = dockyard_figures(work, model, args.runs)
            peers = peer_figures(work / f"peers-{size}", model, args.runs)
            if not push:
                digest = "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
                endpoint = EndpointSpec(
                    name="predict",
                    wsgi="app:app",
                    files=[EndpointFile(name="model", path="models/model.bin", digest=digest)],
                )
                push = push_figures(work, model, digest, endpoint, min(args.runs, 3))
            model.unlink()
            print(f"model {size} MB, {args.runs} runs, medians (model on local disk, no fetch):")
            for phase, label in (
                ("first_s", "first build"),
                ("code_s", "code-only rebuild"),
                ("same_s", "no-change rebuild"),
            ):
                others = "  ".join(f"{t} {f[phase]:.3f} s" for t, f in peers.items())
                print(f"  {label:<18} dockyard {ours[phase]:.3f} s  {others}")
                rows.append(
                    {
                        "name": f"{label}, {size} MB model (s)",
                        "subject": round(ours[phase], 4),
                        "reference": round(ours["floor_s"], 4) if phase == "first_s" else None,
                        "ratio": round(ours[phase] / ours["floor_s"], 3)
                        if phase == "first_s"
                        else None,
                        "peers": {t: round(f[phase], 4) for t, f in peers.items()},
                        "raw": {"dockyard": ours, "peers": peers},
                    }
                )
            print(
                f"  floor (sha256 + write) {ours['floor_s']:.3f} s; code-only rebuild wrote "
                f"{ours['code_model_bytes_written']} model bytes (goal 0)"
            )
    print(
        f"  with a registry (base busybox mounted, {push['registry']}): first build + push "
        f"{push['push_build_s']:.3f} s; rebuild + push {push['push_rebuild_s']:.3f} s, "
        f"{push['rebuild_uploaded_bytes']} bytes uploaded (model layer {push['model_layer']} "
        f"bytes: re-uploaded {'yes' if push['model_reuploaded'] else 'no'})"
    )
    rows.append(
        {
            "name": f"rebuild + push, {args.model_mb[0]} MB model (bytes uploaded)",
            "subject": push["rebuild_uploaded_bytes"],
            "reference": push["model_layer"],
            "ratio": round(push["rebuild_uploaded_bytes"] / push["model_layer"], 6),
            "raw": push,
        }
    )
    print(json.dumps({"benchmark": "build", "runs": args.runs, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
