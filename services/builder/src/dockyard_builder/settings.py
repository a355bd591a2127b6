"""The builder's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from dockyard_builder.base import DEFAULT_BASE_REGISTRIES
from dockyard_builder.dependencies import PackageIndex
from dockyard_common import CommonSettings, Version

__all__ = ["BuilderSettings"]


class BuilderSettings(CommonSettings):
    """Where images are written and how layers are compressed."""

    default_base_image: str = "python:3.11-slim"
    code_compression: Literal["gzip", "zstd", "none"] = "gzip"
    file_compression: Literal["none", "zstd"] = "none"
    """Model files: weights barely compress, and gzip runs at ~35 MB/s."""
    max_code_bytes: int = 2 * 1024**3
    max_code_members: int = 100_000
    max_file_bytes: int = 50 * 1024**3
    """The largest endpoint file the builder downloads from a URL."""
    files_allow_http: bool = False
    """Download model files from this machine or private networks too (the API's setting of
    the same name lets users give such URLs: tests and closed networks only)."""
    git_allow_file_urls: bool = False
    """Let versions name ``file://`` git repositories (tests and single-user set-ups only)."""
    git_allow_private_addresses: bool = False
    """Fetch git code from this machine or private networks too (the API's setting of the
    same name lets users give such URLs: tests and closed networks only)."""
    git_timeout_s: float = 300.0
    pip_index_url: str | None = None
    """The package index of dependency layers (pip's default, PyPI, when unset)."""
    pip_find_links: tuple[str, ...] = ()
    """Extra wheel directories or pages pip looks in."""
    pip_no_index: bool = False
    """Install only from ``pip_find_links`` (offline builders, tests)."""
    pip_timeout_s: float = 600.0
    pip_retries: int = Field(default=5, ge=1)
    """How often pip retries a connection to the index before the build is retried later
    (at least once: only a retry makes pip say that the index did not answer)."""
    host_python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    """This machine's Python: what local targets run on (the wheelhouse is built for it),
    and what image dependencies are built for when a base image says nothing of its own."""
    build_concurrency: int = Field(default=2, ge=1, le=64)
    """Builds run at once: a slow one (a large install) never holds up the others."""

    registry_url: str | None = None
    """The registry images are pushed to (``https://host`` or ``http://127.0.0.1:5000``);
    unset, images stay in the OCI layout under the data directory."""
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    registry_repository_prefix: str = "dockyard"
    registry_chunk_bytes: int = 16 * 1024 * 1024
    docker_host: str | None = None
    """The engine of the docker build backend (``unix:///...``); unset, ``DOCKER_HOST`` or
    the default socket."""
    base_registries: tuple[str, ...] = tuple(sorted(DEFAULT_BASE_REGISTRIES))
    """Registries base images may be fetched from (the push registry's non-version
    repositories too); any other host a version names is refused."""
    base_image_layouts: dict[str, str] = Field(default_factory=dict)
    """Base images served from OCI layouts on this machine: image name → ``oci:<dir>:<tag>``
    (e.g. ``{"python:3.11-slim": "oci:/srv/bases/python:3.11-slim"}``)."""
    insecure_registries: tuple[str, ...] = ()
    """Registry hosts base images are pulled from over plain HTTP."""

    def repository_of(self, version: Version) -> str:
        """The registry repository of a deployment's images."""
        return (
            f"{self.registry_repository_prefix}/{version.owner}/{version.project}/"
            f"{version.deployment}"
        )

    @property
    def package_index(self) -> PackageIndex:
        """Where pip finds the packages of dependency layers."""
        return PackageIndex(
            index_url=self.pip_index_url,
            find_links=self.pip_find_links,
            no_index=self.pip_no_index,
        )

    @property
    def images_dir(self) -> Path:
        """The OCI image layout every build writes into (blobs shared by digest)."""
        return self.data_dir / "images"

    @property
    def layer_cache_dir(self) -> Path:
        """Which file layers are already in the image layout."""
        return self.data_dir / "builder-cache" / "file-layers"

    @property
    def base_python_cache_dir(self) -> Path:
        """Which Python each base image holds, by its digest (read from its layers once)."""
        return self.data_dir / "builder-cache" / "base-pythons"

    @property
    def work_dir(self) -> Path:
        """Scratch space for builds in progress."""
        return self.data_dir / "builder-work"
