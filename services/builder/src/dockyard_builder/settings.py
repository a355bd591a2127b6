"""The builder's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dockyard_common import CommonSettings

__all__ = ["BuilderSettings"]


class BuilderSettings(CommonSettings):
    """Where images are written and how layers are compressed."""

    default_base_image: str = "python:3.11-slim"
    code_compression: Literal["gzip", "none"] = "gzip"
    max_code_bytes: int = 2 * 1024**3
    max_code_members: int = 100_000
    max_file_bytes: int = 50 * 1024**3
    """The largest endpoint file the builder downloads from a URL."""
    git_allow_file_urls: bool = False
    """Let versions name ``file://`` git repositories (tests and single-user set-ups only)."""
    git_timeout_s: float = 300.0

    @property
    def images_dir(self) -> Path:
        """The OCI image layout every build writes into (blobs shared by digest)."""
        return self.data_dir / "images"

    @property
    def layer_cache_dir(self) -> Path:
        """Which file layers are already in the image layout."""
        return self.data_dir / "builder-cache" / "file-layers"

    @property
    def work_dir(self) -> Path:
        """Scratch space for builds in progress."""
        return self.data_dir / "builder-work"
