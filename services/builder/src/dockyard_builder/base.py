"""Base images: resolved from a registry or a local OCI layout, their layers kept by digest.

A version image is its base image's layers plus the app layers. The base's manifest and
config are read (the ``linux/amd64`` entry of an index), and its layers are copied into the
builder's image layout once per digest, so later builds on the same base copy nothing.
Docker media types are renamed to their OCI twins: the bytes, and so the digests, are the same.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard_builder.image import BaseImage
from dockyard_builder.registry import RegistryClient, parse_image_name
from dockyard_common import PermanentError
from dockyard_common.oci_layout import BlobNotFound, OciLayout

__all__ = [
    "DEFAULT_BASE_REGISTRIES",
    "BaseImage",
    "LayoutSource",
    "RegistrySource",
    "resolve_base",
]

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_OCI_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ),
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
}


@dataclass(frozen=True)
class LayoutSource:
    """A base image in an OCI layout on disk: ``oci:<dir>:<tag>``."""

    directory: Path
    tag: str


DEFAULT_BASE_REGISTRIES = frozenset(
    {
        "registry-1.docker.io",
        "ghcr.io",
        "quay.io",
        "public.ecr.aws",
        "gcr.io",
        "registry.k8s.io",
        "mcr.microsoft.com",
    }
)
"""Public registries base images may come from unless the operator says otherwise."""


@dataclass
class RegistrySource:
    """Registries base images may come from: one client per host, made on demand.

    A base image is a user's choice, so where the builder fetches from is the operator's:
    hosts outside ``allowed_hosts`` (and the push registry) are refused, which keeps users
    from pointing the builder at internal services, and the push registry's own
    repositories (``private_prefix``, other deployments' images) are never a base.
    """

    clients: dict[str, RegistryClient] = field(default_factory=dict)
    insecure_hosts: frozenset[str] = frozenset()
    """Hosts spoken to over plain HTTP (a registry on loopback, say)."""
    allowed_hosts: frozenset[str] = DEFAULT_BASE_REGISTRIES
    private_prefix: tuple[str, str] | None = None
    """(push registry host, repository prefix) of the version images themselves."""

    def check(self, host: str, repository: str, name: str) -> None:
        """Refuse a base the builder may not fetch; :class:`PermanentError` saying why."""
        if self.private_prefix is not None:
            private_host, prefix = self.private_prefix
            if host == private_host and f"{repository}/".startswith(f"{prefix}/"):
                raise PermanentError(
                    f"base image {name} is a version image of this platform; name a base image"
                )
        if host not in self.allowed_hosts and host not in self.clients:
            raise PermanentError(
                f"base image {name}: registry {host} is not one base images may come from "
                "(the operator's DOCKYARD_BASE_REGISTRIES)"
            )

    def client(self, host: str) -> RegistryClient:
        """The client of ``host``: a configured one, else an anonymous one."""
        if host not in self.clients:
            scheme = "http" if host in self.insecure_hosts else "https"
            self.clients[host] = RegistryClient(f"{scheme}://{host}")
        return self.clients[host]

    def close(self) -> None:
        """Close every client."""
        for client in self.clients.values():
            client.close()


def _pick_amd64(index: dict[str, Any], name: str) -> str:
    for entry in index.get("manifests", []):
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            digest: str = entry["digest"]
            return digest
    raise PermanentError(f"base image {name} has no linux/amd64 image")


def _check_platform(config: dict[str, Any], name: str) -> None:
    """Version images are linux/amd64 (their index says so, their wheels are for it)."""
    platform = (config.get("os", "linux"), config.get("architecture", "amd64"))
    if platform != ("linux", "amd64"):
        raise PermanentError(f"base image {name} is {'/'.join(platform)}, not linux/amd64")


def _oci_layers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        dict(layer, mediaType=_OCI_LAYER_TYPES.get(layer["mediaType"], layer["mediaType"]))
        for layer in manifest["layers"]
    ]


def _from_layout(name: str, source: LayoutSource, layout: OciLayout) -> BaseImage:
    base = OciLayout(source.directory)
    entry = base.resolve(source.tag)
    if entry is None:
        raise PermanentError(f"base image {name}: no tag {source.tag!r} in {source.directory}")
    try:
        digest = entry["digest"]
        document = base.read_json(digest)
        if document.get("mediaType") in _INDEX_TYPES or "manifests" in document:
            digest = _pick_amd64(document, name)
            document = base.read_json(digest)
        config = base.read_json(document["config"]["digest"])
        _check_platform(config, name)
        layers = _oci_layers(document)
        for layer in layers:
            if not layout.has_blob(layer["digest"]):
                layout.add_blob(base.read_blob(layer["digest"]))
    except BlobNotFound as exc:
        raise PermanentError(f"base image {name} is incomplete: {exc}") from exc
    return BaseImage(name=name, digest=digest, config=config, layers=layers)


def _from_registry(
    name: str, registries: RegistrySource, layout: OciLayout, scratch: Path
) -> BaseImage:
    image = parse_image_name(name)
    registries.check(image.host, image.repository, name)
    client = registries.client(image.host)
    data, media_type = client.get_manifest(image.repository, image.reference)
    document = json.loads(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if media_type in _INDEX_TYPES or "manifests" in document:
        digest = _pick_amd64(document, name)
        data, _ = client.get_manifest(image.repository, digest)
        document = json.loads(data)
    config_digest = document["config"]["digest"]
    if not layout.has_blob(config_digest):
        client.download_blob(image.repository, config_digest, scratch / "config")
        layout.add_blob_file(scratch / "config", config_digest)
    config = layout.read_json(config_digest)
    _check_platform(config, name)
    layers = _oci_layers(document)
    for layer in layers:
        if not layout.has_blob(layer["digest"]):
            with tempfile.NamedTemporaryFile(dir=scratch, delete=False) as part:
                path = Path(part.name)
            client.download_blob(image.repository, layer["digest"], path)
            layout.add_blob_file(path, layer["digest"])
    return BaseImage(
        name=name,
        digest=digest,
        config=config,
        layers=layers,
        registry_host=image.host,
        repository=image.repository,
    )


def resolve_base(
    name: str,
    layout: OciLayout,
    registries: RegistrySource | None,
    scratch: Path,
    layouts: Mapping[str, str] | None = None,
) -> BaseImage | None:
    """The base image ``name`` with its layers in ``layout``; None when it cannot be had here.

    ``layouts`` (the operator's setting) maps image names to local OCI layouts,
    ``oci:<dir>:<tag>``; such a name always resolves. Any other name resolves from its
    registry when ``registries`` is given (a registry is configured), and is None
    otherwise: the embedded default builds app-only images that name their base.
    """
    local = (layouts or {}).get(name)
    try:
        if local is not None:
            directory, _, tag = local.removeprefix("oci:").partition(":")
            return _from_layout(name, LayoutSource(Path(directory), tag or "latest"), layout)
        if registries is None:
            return None
        return _from_registry(name, registries, layout, scratch)
    except (KeyError, TypeError, ValueError) as exc:
        # A manifest or config of another shape, or a descriptor whose digest is no digest.
        raise PermanentError(f"base image {name} cannot be read: {exc!r}") from exc
