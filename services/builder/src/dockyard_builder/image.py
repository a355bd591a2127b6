"""The documents of a version image: per-endpoint configs and manifests, one index.

Pure functions over the version and its layers; the same inputs give the same bytes.
No timestamps go into any document, so rebuilding unchanged inputs gives the same digest.
"""

from __future__ import annotations

from typing import Any

from dockyard_builder.layers import LayerBlob
from dockyard_builder.runner import RUNNER_DIR, runner_command
from dockyard_common.models import EndpointSpec, Version
from dockyard_common.oci_layout import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
    canonical_json,
    descriptor,
)

__all__ = [
    "APP_DIR",
    "EndpointImage",
    "endpoint_command",
    "endpoint_config",
    "endpoint_manifest",
    "version_annotations",
    "version_index",
]

APP_DIR = "app"
"""The code root inside the image (the working directory of every endpoint)."""

ANNOTATION_PREFIX = "dev.dockyard"
BASE_NAME = "org.opencontainers.image.base.name"

EndpointImage = tuple[bytes, bytes]
"""(config bytes, manifest bytes) of one endpoint's image."""


def endpoint_command(spec: EndpointSpec) -> list[str]:
    """The image command: the runner for ``wsgi``, ``sh -c`` for a ``server-command``."""
    if spec.wsgi is not None:
        return runner_command(spec.wsgi)
    command = spec.server_command
    script = " && ".join(command) if isinstance(command, list) else str(command)
    return ["sh", "-c", script]


def version_annotations(
    version: Version, base_image: str, commit: str | None = None
) -> dict[str, str]:
    """Annotations naming what the image is: owner, project, deployment, version, code."""
    annotations = {
        f"{ANNOTATION_PREFIX}.owner": version.owner,
        f"{ANNOTATION_PREFIX}.project": version.project,
        f"{ANNOTATION_PREFIX}.deployment": version.deployment,
        f"{ANNOTATION_PREFIX}.version": version.name,
        f"{ANNOTATION_PREFIX}.code": version.code.description,
        BASE_NAME: base_image,
    }
    if version.code.git is not None:
        annotations["org.opencontainers.image.source"] = version.code.git.url
    if commit is not None:
        annotations["org.opencontainers.image.revision"] = commit
    return annotations


def endpoint_config(
    version: Version,
    spec: EndpointSpec,
    layers: list[LayerBlob],
    base_image: str,
    commit: str | None = None,
    python_path: list[str] | None = None,
) -> bytes:
    """The image config of one endpoint: Env, Cmd, WorkingDir, ExposedPorts, Labels."""
    port = spec.listen_port
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": ":".join(python_path or [f"/{RUNNER_DIR}"]),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        **version.env,
    }
    labels = dict(
        version_annotations(version, base_image, commit),
        **{f"{ANNOTATION_PREFIX}.endpoint": spec.name},
    )
    document: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [f"{key}={value}" for key, value in sorted(env.items())],
            "Cmd": endpoint_command(spec),
            "WorkingDir": f"/{APP_DIR}",
            "ExposedPorts": {f"{port}/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    return canonical_json(document)


def endpoint_manifest(
    version: Version,
    spec: EndpointSpec,
    config: bytes,
    layers: list[LayerBlob],
    base_image: str,
    commit: str | None = None,
) -> bytes:
    """The image manifest of one endpoint."""
    annotations = dict(
        version_annotations(version, base_image, commit),
        **{f"{ANNOTATION_PREFIX}.endpoint": spec.name},
    )
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": descriptor(MEDIA_TYPE_CONFIG, config),
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
        "annotations": annotations,
    }
    return canonical_json(document)


def version_index(
    version: Version, manifests: dict[str, bytes], base_image: str, commit: str | None = None
) -> bytes:
    """The OCI index of a version: one manifest per endpoint, annotated with its name."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [
            dict(
                descriptor(
                    MEDIA_TYPE_MANIFEST, manifest, {f"{ANNOTATION_PREFIX}.endpoint": endpoint}
                ),
                platform={"architecture": "amd64", "os": "linux"},
            )
            for endpoint, manifest in sorted(manifests.items())
        ],
        "annotations": version_annotations(version, base_image, commit),
    }
    return canonical_json(document)
