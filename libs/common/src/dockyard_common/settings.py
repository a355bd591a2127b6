"""The settings base every service extends: environment variables prefixed ``DOCKYARD_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings"]


class CommonSettings(BaseSettings):
    """What every Dockyard process needs to reach the platform's infrastructure.

    Build it once at start-up and pass it down; nothing else reads the environment.
    """

    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path(".dockyard")
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    event_source: str = "dockyard"
    liveness_file: Path | None = None
    """Touched every few seconds by a consumer service's event loop (builder, scheduler,
    webhook delivery): a liveness probe finding it stale finds the process stuck."""
