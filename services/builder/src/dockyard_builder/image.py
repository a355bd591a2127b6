"""The documents of a version image: per-endpoint configs and manifests, one index.

Pure functions over the version and its layers; the same inputs give the same bytes.
No timestamps go into any document, so rebuilding unchanged inputs gives the same digest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dockyard_builder.layers import LayerBlob
from dockyard_builder.runner import RUNNER_DIR, runner_command, server_command
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
    "BaseImage",
    "EndpointImage",
    "endpoint_command",
    "endpoint_config",
    "endpoint_manifest",
    "version_annotations",
    "version_index",
    "wsgi_threads",
]

APP_DIR = "app"
"""The code root inside the image (the working directory of every endpoint)."""

ANNOTATION_PREFIX = "dev.dockyard"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BaseImage:
    """What a version image starts from: its layers (in the layout) and its config."""

    name: str
    digest: str
    config: dict[str, Any]
    layers: list[dict[str, Any]]
    registry_host: str | None = None
    repository: str | None = None
    """Where the base came from, so that a push to the same registry can mount its layers."""

    @property
    def diff_ids(self) -> list[str]:
        """The uncompressed digests of the base's layers, from its config."""
        ids: list[str] = self.config.get("rootfs", {}).get("diff_ids", [])
        return ids


EndpointImage = tuple[bytes, bytes]
"""(config bytes, manifest bytes) of one endpoint's image."""


def wsgi_threads(spec: EndpointSpec) -> int:
    """Requests a ``wsgi`` endpoint's app runs at once: four per CPU it may use (4 to 64).

    valohai.yaml's ``resources.cpu`` is a number or ``{min, max}``; the larger bound counts.
    """
    cpu: Any = spec.resources.get("cpu")
    if isinstance(cpu, dict):
        cpu = cpu.get("max", cpu.get("min"))
    try:
        cpus = float(cpu) if cpu is not None else 1.0
    except (TypeError, ValueError):
        cpus = 1.0
    return max(4, min(64, math.ceil(cpus * 4)))


def endpoint_command(spec: EndpointSpec) -> list[str]:
    """The image command: the runner for ``wsgi``, ``sh -c`` for a ``server-command``."""
    if spec.wsgi is not None:
        return runner_command(spec.wsgi)
    command = spec.server_command
    script = " && ".join(command) if isinstance(command, list) else str(command)
    return server_command(script)


def version_annotations(
    version: Version,
    base_image: str | None,
    commit: str | None = None,
    base: BaseImage | None = None,
) -> dict[str, str]:
    """Annotations naming what the image is: owner, project, deployment, version, code, and
    its base (``base_image`` None: the endpoints' bases differ, each manifest names its own)."""
    annotations = {
        f"{ANNOTATION_PREFIX}.owner": version.owner,
        f"{ANNOTATION_PREFIX}.project": version.project,
        f"{ANNOTATION_PREFIX}.deployment": version.deployment,
        f"{ANNOTATION_PREFIX}.version": version.name,
        f"{ANNOTATION_PREFIX}.code": version.code.description,
    }
    if base_image is not None:
        annotations[BASE_NAME] = base_image
    if version.code.git is not None:
        annotations["org.opencontainers.image.source"] = version.code.git.url
    if commit is not None:
        annotations["org.opencontainers.image.revision"] = commit
    if base is not None:
        annotations[BASE_DIGEST] = base.digest
    return annotations


def _base_env(base: BaseImage | None) -> dict[str, str]:
    if base is None:
        return {}
    env: dict[str, str] = {}
    for item in (base.config.get("config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def endpoint_config(
    version: Version,
    spec: EndpointSpec,
    layers: list[LayerBlob],
    base_image: str,
    commit: str | None = None,
    python_path: list[str] | None = None,
    base: BaseImage | None = None,
    bin_path: list[str] | None = None,
) -> bytes:
    """The image config of one endpoint: Env, Cmd, WorkingDir, ExposedPorts, Labels.

    On a base image, its environment comes first (its ``PATH`` kept, after ``bin_path``: the
    dependency layer's scripts) and its layers' diff ids before the app's; its entrypoint
    is dropped, since the command is the whole story.
    """
    port = spec.listen_port
    base_env = _base_env(base)
    env = {
        **base_env,
        "PATH": ":".join([*(bin_path or []), base_env.get("PATH", DEFAULT_PATH)]),
        "PYTHONPATH": ":".join(python_path or [f"/{RUNNER_DIR}"]),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        **({"DOCKYARD_WSGI_THREADS": str(wsgi_threads(spec))} if spec.wsgi else {}),
        **version.env,
    }
    base_config = (base.config.get("config") or {}) if base else {}
    labels = dict(
        base_config.get("Labels") or {},
        **version_annotations(version, base_image, commit, base),
        **{f"{ANNOTATION_PREFIX}.endpoint": spec.name},
    )
    config: dict[str, Any] = {
        "Env": [f"{key}={value}" for key, value in sorted(env.items())],
        "Cmd": endpoint_command(spec),
        "WorkingDir": f"/{APP_DIR}",
        "ExposedPorts": {f"{port}/tcp": {}},
        "Labels": labels,
    }
    if base_config.get("User"):
        config["User"] = base_config["User"]
    document: dict[str, Any] = {
        "architecture": base.config.get("architecture", "amd64") if base else "amd64",
        "os": base.config.get("os", "linux") if base else "linux",
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": [*(base.diff_ids if base else []), *(x.diff_id for x in layers)],
        },
    }
    return canonical_json(document)


def endpoint_manifest(
    version: Version,
    spec: EndpointSpec,
    config: bytes,
    layers: list[LayerBlob],
    base_image: str,
    commit: str | None = None,
    base: BaseImage | None = None,
) -> bytes:
    """The image manifest of one endpoint: the base's layers, then the app's."""
    annotations = dict(
        version_annotations(version, base_image, commit, base),
        **{f"{ANNOTATION_PREFIX}.endpoint": spec.name},
    )
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": descriptor(MEDIA_TYPE_CONFIG, config),
        "layers": [
            *(
                {"mediaType": x["mediaType"], "digest": x["digest"], "size": x["size"]}
                for x in (base.layers if base else [])
            ),
            *(
                {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ),
        ],
        "annotations": annotations,
    }
    return canonical_json(document)


def version_index(
    version: Version,
    manifests: dict[str, bytes],
    base_image: str | None,
    commit: str | None = None,
    base: BaseImage | None = None,
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
        "annotations": version_annotations(version, base_image, commit, base),
    }
    return canonical_json(document)
