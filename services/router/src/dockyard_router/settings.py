"""The router's settings (environment variables prefixed ``DOCKYARD_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from dockyard_common import CommonSettings

__all__ = ["RouterSettings"]


class RouterSettings(CommonSettings):
    """Where the router listens, the region it serves from, and upstream limits."""

    router_host: str = "127.0.0.1"
    router_port: int = 8081
    router_workers: int = Field(default=1, ge=1, le=64)
    """Processes serving the port (SO_REUSEPORT), under one parent when more than one."""
    router_worker: int | None = None
    """Set by that parent in each worker's environment: the worker's index (in its logs)."""
    router_ready_fd: int | None = None
    """Set by that parent too: a pipe the worker writes to once it serves."""
    router_listen_fd: int | None = None
    """A listening socket the process inherits and serves on instead of binding the port
    itself (every worker accepts on it): set by a supervisor that holds the socket, so that
    connections wait in its backlog while the router restarts instead of being refused."""
    region: str = "eu"
    region_order: list[str] = Field(default_factory=list)
    """Other regions nearest first (JSON list): where requests fail over when the preferred
    region has no healthy upstream; regions not named come after, by name."""
    upstream_timeout_s: float = 60.0
    """How long a request may take upstream (until its response ends) before a 504."""
    endpoint_timeouts: dict[str, float] = Field(default_factory=dict)
    """Overrides of ``upstream_timeout_s`` (JSON object): ``"owner/project/deployment"`` or
    ``"owner/project/deployment/endpoint"`` → seconds; the endpoint's entry wins."""
    upstream_connect_timeout_s: float = 2.0
    upstream_eject_s: float = 5.0
    """How long an upstream that refused or dropped a connection gets no new requests."""
    client_idle_timeout_s: float = 75.0
    """A client connection that sends nothing this long, with no request under way, closes."""
    client_head_timeout_s: float = Field(default=10.0, gt=0)
    """A request line and headers not whole this long after their first byte (after the
    connection opened, for its first request) are answered 408 and the connection closed."""
    client_connections: int = Field(default=4096, ge=1)
    """Client connections at most per router process; one more is answered 503 (with
    Retry-After) and closed at once, without being read."""
    upstream_connections: int = 256
    """Connections at most per upstream and router process (kept alive between requests)."""
    hold_queue: int = Field(default=64, ge=1)
    """Requests at most held per endpoint scaled to zero and router process while a replica
    starts; one more is answered 503 with Retry-After. At least 1: only a held request
    wakes an idle endpoint, so 0 would leave it asleep for ever."""
    wake_deadline_s: float = Field(default=30.0, gt=0)
    """How long a held request waits for a replica to be ready before a 504."""
    admin_token: SecretStr | None = None
    """The platform admin token: the ops API (/_ops) and /metrics answer only to it; both
    are off when it is unset."""
