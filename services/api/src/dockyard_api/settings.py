"""The API's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from dockyard_api.alias_rules import HISTORY_LIMIT
from dockyard_api.webhooks.settings import WebhookSettings

__all__ = ["ApiSettings"]


class ApiSettings(WebhookSettings):
    """Where the API listens, its bootstrap admin token and its input caps.

    It extends the webhook settings: subscription URLs are checked against the allow-list
    the delivering process uses.
    """

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    admin_token: SecretStr
    switch_wait_s: float = 2.0
    """How long an alias change waits for every live router to apply it (then 202), and a new
    webhook for every live webhook dispatcher (then it names the laggards)."""
    max_json_bytes: int = 1024**2
    max_upload_bytes: int = 2 * 1024**3
    max_archive_members: int = 100_000
    files_allow_http: bool = False
    """Accept http:// file URLs and ones on this machine or private networks (tests and
    closed networks only: otherwise a user could have the builder read internal services)."""
    git_allow_file_urls: bool = False
    """Accept ``file://`` git code (it reads the server's disk: tests and single users only)."""
    git_allow_private_addresses: bool = False
    """Accept git URLs on this machine or private networks (tests and closed networks only:
    otherwise a user could have the builder probe internal services)."""
    logs_timeout_s: float = 2.0
    """How long the logs route waits for each target's scheduler to answer."""
    retention_alias_changes: int = Field(default=3, ge=1, le=HISTORY_LIMIT)
    """Warm rollback: the versions of each alias's last N changes keep running (at most the
    changes an alias keeps)."""
    retention_grace_s: float = 3600.0
    """Other versions (but a deployment's newest) stop this long after leaving that window."""
    retention_sweep_every_s: float = 60.0
    """How often the API looks for versions to stop; 0 turns retention off."""
    instance_id: str | None = None
    """Names the platform this process belongs to in ``/readyz/platform``'s answer (a
    launcher sets it to tell its own platform from another on the same port); random when
    unset."""
    router_url: str = "http://127.0.0.1:8081"
    """Where the console sends an endpoint's test calls: the router, as a user would."""
    console_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    """How long a console sign-in lasts (a revoked token ends it at once)."""
    ready_targets: list[str] = Field(default_factory=list)
    """Targets that must be registered before ``/readyz/platform`` answers 200; when empty,
    any one will do."""
