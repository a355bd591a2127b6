"""The route table and how a request path resolves against it: pure, no I/O.

A route is one endpoint of one version on one target: ``owner/project/deployment/version/
endpoint`` and the target's region and upstreams. The table is the union of them; a
request resolves to the upstreams of its endpoint, those of the router's own region first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from dockyard_common.models import EndpointState, WorkloadState
from dockyard_common.subjects import route_key

__all__ = ["Resolution", "Route", "RouteTable", "route_from_state", "split_request_path"]


class Route(BaseModel):
    """Where one endpoint of one version runs on one target (empty upstreams: not serving)."""

    model_config = ConfigDict(frozen=True)

    key: str
    target: str
    region: str
    upstreams: list[str]

    @property
    def field(self) -> str:
        """The route's identity in the table: ``<key>|<target>``."""
        return f"{self.key}|{self.target}"


def route_from_state(state: EndpointState) -> Route:
    """The route an endpoint state report implies (only a ready endpoint has upstreams)."""
    return Route(
        key=route_key(state.owner, state.project, state.deployment, state.version, state.endpoint),
        target=state.target,
        region=state.region,
        upstreams=list(state.upstreams) if state.state is WorkloadState.READY else [],
    )


@dataclass(frozen=True)
class Resolution:
    """Where a request goes: the candidate upstreams in preference order, and the rest path."""

    key: str
    version: str
    upstreams: list[tuple[str, str]]
    """(region, upstream URL), own region first."""
    rest: str
    prefix: str


def split_request_path(raw_path: str) -> tuple[str, str, str] | None:
    """``/o/p/d/v/e/rest`` → (route key, version, raw rest); None when too short.

    The rest stays percent-encoded as received; it is only ever appended to an upstream path.
    """
    parts = raw_path.lstrip("/").split("/", 5)
    if len(parts) < 5 or not all(parts[:5]):
        return None
    owner, project, deployment, version, endpoint = parts[:5]
    rest = parts[5] if len(parts) == 6 else ""
    return route_key(owner, project, deployment, version, endpoint), version, rest


@dataclass
class RouteTable:
    """The in-process copy of the route table; updated by whole routes, read per request."""

    routes: dict[str, Route] = field(default_factory=dict)
    _by_key: dict[str, dict[str, Route]] = field(default_factory=dict)

    def put(self, route: Route) -> None:
        """Insert or replace one route (a route without upstreams is removed)."""
        self.remove(route.field)
        if not route.upstreams:
            return
        self.routes[route.field] = route
        self._by_key.setdefault(route.key, {})[route.target] = route

    def remove(self, field_name: str) -> None:
        """Forget one route by its field."""
        route = self.routes.pop(field_name, None)
        if route is None:
            return
        targets = self._by_key.get(route.key, {})
        targets.pop(route.target, None)
        if not targets:
            self._by_key.pop(route.key, None)

    def resolve(self, raw_path: str, own_region: str) -> Resolution | None:
        """The upstreams for a request path, own region first; None when nothing serves it."""
        split = split_request_path(raw_path)
        if split is None:
            return None
        key, version, rest = split
        targets = self._by_key.get(key)
        if not targets:
            return None
        ordered = sorted(targets.values(), key=lambda r: (r.region != own_region, r.target))
        upstreams = [(r.region, url) for r in ordered for url in r.upstreams]
        return Resolution(
            key=key, version=version, upstreams=upstreams, rest=rest, prefix="/" + key
        )
