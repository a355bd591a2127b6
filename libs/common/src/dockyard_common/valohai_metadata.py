"""``valohai-metadata.json``: what a Valohai endpoint finds in its working directory.

Endpoints written for Valohai read this file at start (deployment, version, endpoint and
project, in the shape Valohai documents). Every driver hands the document to the replica in
:data:`VALOHAI_METADATA_ENV`, and the runner shipped in the image writes it to
:data:`VALOHAI_METADATA_FILE` in the working directory before the server starts. Pure: the
same version gives the same document (no clock, no I/O).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from dockyard_common.models import EndpointSpec, Version

__all__ = [
    "VALOHAI_METADATA_ENV",
    "VALOHAI_METADATA_FILE",
    "valohai_metadata",
    "valohai_metadata_json",
]

VALOHAI_METADATA_ENV = "DOCKYARD_VALOHAI_METADATA"
"""The environment variable carrying the document to the runner (JSON)."""

VALOHAI_METADATA_FILE = "valohai-metadata.json"
"""The file the runner writes in the endpoint's working directory."""

_SCHEMA = 1


def _bound(value: Any, which: str) -> float | None:
    """A ``resources`` entry's number: itself, or its ``which`` bound (else the other one)."""
    if isinstance(value, dict):
        other = "min" if which == "max" else "max"
        value = value.get(which, value.get(other))
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _datum_name(source: str | None, path: str) -> str:
    """The datum's own name: the URL's last segment, else the file name it is placed as."""
    if source and "://" in source:
        last = urlsplit(source).path.rstrip("/").rsplit("/", 1)[-1]
        if last:
            return last
    return path.rsplit("/", 1)[-1]


def _endpoint(version: Version, spec: EndpointSpec) -> dict[str, Any]:
    sizes = version.image.file_sizes if version.image is not None else {}
    memory = _bound(spec.resources.get("memory"), "max")
    return {
        "name": spec.name,
        "cpu_request": _bound(spec.resources.get("cpu"), "min"),
        "memory_limit": int(memory) if memory is not None else None,
        "files": [
            {
                "name": file.name,
                "path": file.path,
                "datum": {
                    "name": _datum_name(file.url, file.path),
                    "size": sizes.get(f"{spec.name}/{file.name}"),
                },
            }
            for file in spec.files
        ],
    }


def valohai_metadata(
    version: Version, endpoint: str, target: str, base_url: str | None = None
) -> dict[str, Any]:
    """The ``valohai-metadata.json`` document of ``endpoint`` of ``version`` on ``target``.

    ``base_url`` is where the router serves the target (``https://models.example.com``);
    without it the deployment's ``url`` is its path alone. Raises ``KeyError`` for an
    endpoint the version does not have.
    """
    spec = next((e for e in version.endpoints if e.name == endpoint), None)
    if spec is None:
        raise KeyError(f"version {version.name} has no endpoint {endpoint!r}")
    path = f"/{version.owner}/{version.project}/{version.deployment}/"
    return {
        "deployment": {
            "name": version.deployment,
            "target": target,
            "url": f"{base_url.rstrip('/')}{path}" if base_url else path,
        },
        "version": {
            "name": version.name,
            "enabled": True,
            "ctime": version.created_at.isoformat().replace("+00:00", "Z"),
        },
        "endpoint": _endpoint(version, spec),
        "project": {"name": version.project, "owner": {"username": version.owner}},
        "meta": {"schema_version": _SCHEMA, "generator": "dockyard"},
    }


def valohai_metadata_json(
    version: Version, endpoint: str, target: str, base_url: str | None = None
) -> str:
    """:func:`valohai_metadata` as the JSON a driver puts in :data:`VALOHAI_METADATA_ENV`."""
    return json.dumps(
        valohai_metadata(version, endpoint, target, base_url), sort_keys=True, indent=2
    )
