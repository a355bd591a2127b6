"""A real OCI distribution registry (Debian's ``docker-registry``) on a free loopback port,
and a tiny runnable base image made from busybox, pushed to it with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from dockyard_common.oci_layout import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    OciLayout,
    canonical_json,
    descriptor,
)
from dockyard_common.runtime.processes import free_port

BUSYBOX = Path("/bin/busybox")
"""Debian's busybox-static: a one-file userland (sh, httpd, ...)."""

INSTALL_HINT = "apt-get install docker-registry skopeo busybox-static (the README's set-up does)"


@dataclass(frozen=True)
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:<port>``, ``url`` its plain-HTTP URL."""

    host: str
    url: str


@contextmanager
def run_registry(directory: Path) -> Iterator[Registry]:
    """Start ``docker-registry`` storing under ``directory``; stop it on exit."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError(f"docker-registry is not installed: {INSTALL_HINT}")
    port = free_port()
    config = directory / "config.yml"
    config.write_text(
        json.dumps(  # JSON is YAML: no YAML writer needed
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {
                    "filesystem": {"rootdirectory": str(directory / "data")},
                    "delete": {"enabled": True},
                },
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (directory / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    registry = Registry(host=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{registry.url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not start: {(directory / 'registry.log').read_text()}"
                )
            time.sleep(0.05)
        yield registry
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _busybox_layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("bin", "tmp", "www"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        for name in ("bin/busybox", "bin/sh"):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def busybox_layout(directory: Path, tag: str = "busybox") -> Path:
    """An OCI layout holding a runnable busybox image (uncompressed, one layer) as ``tag``."""
    layout = OciLayout(directory)
    layout.ensure()
    layer = _busybox_layer()
    layer_digest = layout.add_blob(layer)
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "BASE=busybox"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    layout.add_blob(config)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": descriptor(MEDIA_TYPE_CONFIG, config),
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
    )
    layout.add_blob(manifest)
    layout.tag(tag, descriptor(MEDIA_TYPE_MANIFEST, manifest))
    return directory


def rootfs_layout(
    directory: Path, layers: list[dict[str, str | bytes]], env: list[str] | None = None
) -> str:
    """An OCI layout of a base image of gzip ``layers`` tagged ``base``; ``oci:<dir>:base``.

    Each layer maps paths to file contents (bytes) or to a symbolic link's target (str).
    """
    layout = OciLayout(directory)
    layout.ensure()
    descriptors, diff_ids = [], []
    for members in layers:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, content in sorted(members.items()):
                entry = tarfile.TarInfo(f"./{name}")
                if isinstance(content, str):
                    entry.type, entry.linkname = tarfile.SYMTYPE, content
                    tar.addfile(entry)
                else:
                    entry.size = len(content)
                    tar.addfile(entry, io.BytesIO(content))
        plain = buffer.getvalue()
        layer = gzip.compress(plain, mtime=0)
        diff_ids.append(sha256_of(plain))
        descriptors.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layout.add_blob(layer),
                "size": len(layer),
            }
        )
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin", *(env or [])]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": descriptor(MEDIA_TYPE_CONFIG, config),
            "layers": descriptors,
        }
    )
    layout.add_blob(config)
    layout.add_blob(manifest)
    layout.tag("base", descriptor(MEDIA_TYPE_MANIFEST, manifest))
    return f"oci:{directory}:base"


def push_with_skopeo(layout: Path, tag: str, destination: str) -> None:
    """``skopeo copy`` a layout's image to ``docker://destination`` over plain HTTP."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
    )


def sha256_of(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
