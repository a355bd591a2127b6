"""The router's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

from pydantic import SecretStr

from dockyard_common import CommonSettings

__all__ = ["RouterSettings"]


class RouterSettings(CommonSettings):
    """Where the router listens, the region it serves from, and upstream limits."""

    router_host: str = "127.0.0.1"
    router_port: int = 8081
    region: str = "eu"
    upstream_timeout_s: float = 60.0
    upstream_connections: int = 256
    admin_token: SecretStr | None = None
    """The platform admin token: the ops API (/_ops) answers only to it; off when unset."""
