"""The route table and how a request path resolves against it: pure, no I/O.

A route is one endpoint of one version on one target: ``owner/project/deployment/version/
endpoint`` and the target's region and upstreams. The table is the union of them; a
request resolves to the upstreams of its endpoint, those of the router's own region first.

The table also remembers routes that do not serve (deploying, failed, stopped), so that a
path that does not resolve can be told why (:meth:`RouteTable.explain`): which part of it
is unknown, or that its version was stopped, or has no ready replica yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from dockyard_common import subjects
from dockyard_common.models import Alias, AliasTarget, EndpointState, WorkloadState
from dockyard_common.subjects import route_key

__all__ = [
    "Miss",
    "RequestPath",
    "Resolution",
    "Route",
    "RouteTable",
    "alias_table_key",
    "client_draw",
    "pick_version",
    "route_from_state",
    "split_request_path",
]


class Route(BaseModel):
    """Where one endpoint of one version runs on one target (empty upstreams: not serving)."""

    model_config = ConfigDict(frozen=True)

    key: str
    target: str
    region: str
    upstreams: list[str]
    observed_at: datetime | None = None
    state: WorkloadState | None = None
    """What the scheduler last reported (None in routes stored before it was kept: those
    were all ready ones)."""

    @property
    def field(self) -> str:
        """The route's identity in the table: ``<key>|<target>``."""
        return f"{self.key}|{self.target}"


_ORDER_CACHE_LIMIT = 10_000


def route_from_state(state: EndpointState) -> Route:
    """The route an endpoint state report implies (only a ready endpoint has upstreams)."""
    return Route(
        key=route_key(state.owner, state.project, state.deployment, state.version, state.endpoint),
        target=state.target,
        region=state.region,
        upstreams=list(state.upstreams) if state.state is WorkloadState.READY else [],
        observed_at=state.observed_at,
        state=state.state,
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
    alias: str | None = None

    def labels(self, region: str) -> tuple[str, str, str, str]:
        """(deployment, version, endpoint, region): the metrics labels of this request."""
        deployment, _, endpoint = self.key.rpartition(f"/{self.version}/")
        return deployment, self.version, endpoint, region


@dataclass(frozen=True)
class RequestPath:
    """A request path taken apart: the deployment, the version or alias, the endpoint."""

    deployment: str
    """``owner/project/deployment``."""
    name: str
    """The version or alias segment."""
    endpoint: str
    rest: str

    @property
    def prefix(self) -> str:
        """What the router strips before forwarding: ``/o/p/d/<version-or-alias>/<endpoint>``."""
        return f"/{self.deployment}/{self.name}/{self.endpoint}"

    def route_key(self, version: str) -> str:
        """The route key of this endpoint of ``version``."""
        return f"{self.deployment}/{version}/{self.endpoint}"


def split_request_path(raw_path: str) -> RequestPath | None:
    """``/o/p/d/v/e/rest`` taken apart; None when too short.

    The rest stays percent-encoded as received; it is only ever appended to an upstream path.
    """
    parts = raw_path.lstrip("/").split("/", 5)
    if len(parts) < 5 or not all(parts[:5]):
        return None
    owner, project, deployment, name, endpoint = parts[:5]
    rest = parts[5] if len(parts) == 6 else ""
    return RequestPath(f"{owner}/{project}/{deployment}", name, endpoint, rest)


def alias_table_key(alias: Alias) -> str:
    """The table key of an alias: ``owner/project/deployment/alias``."""
    return subjects.alias_table_key(alias.owner, alias.project, alias.deployment, alias.name)


def pick_version(target: AliasTarget, draw: float) -> str:
    """The version a request goes to; ``draw`` in [0, 1) places it within the weights."""
    if target.version is not None:
        return target.version
    weights = sorted((target.weights or {}).items())
    point = draw * 100
    for version, weight in weights:
        if point < weight:
            return version
        point -= weight
    return next(v for v, w in reversed(weights) if w > 0)


def client_draw(client_key: str) -> float:
    """A stable draw in [0, 1) for a client key: the same client always lands on one side."""
    return int(hashlib.sha256(client_key.encode()).hexdigest()[:8], 16) / 2**32


@dataclass(frozen=True)
class Miss:
    """Why a request path resolves to no upstream: the answer a client gets instead."""

    status: int
    """404 (a part of the path is unknown), 410 (the version was stopped), 503 (it has no
    ready replica, or the alias named points to a version that does not serve)."""
    slug: str
    """The problem type (``https://dockyard.dev/problems/<slug>``)."""
    detail: str
    retry_after_s: int | None = None
    """Set when trying again soon may succeed (the endpoint is still being deployed)."""


_NOT_A_MODEL_PATH = (
    "a model is called at /<owner>/<project>/<deployment>/<version or alias>/<endpoint>/..."
)
_STARTING = frozenset({WorkloadState.PENDING, WorkloadState.DEPLOYING})
_RETRY_STARTING_S = 5

_EndpointStates = dict[str, dict[str, WorkloadState]]
"""endpoint → target → last reported state, of one version."""


@dataclass
class RouteTable:
    """The in-process copy of the route and alias tables; read per request."""

    routes: dict[str, Route] = field(default_factory=dict)
    """The routes that serve (with upstreams), by field."""
    aliases: dict[str, Alias] = field(default_factory=dict)
    loaded: bool = True
    """False in a process that has not loaded whole tables yet (from Redis or the state of
    record): a path it cannot resolve may then be one it would, and is answered 503."""
    _by_key: dict[str, dict[str, Route]] = field(default_factory=dict)
    _idle: dict[str, Route] = field(default_factory=dict)
    """Routes known but not serving (deploying, failed, stopped), by field."""
    _versions: dict[str, dict[str, _EndpointStates]] = field(default_factory=dict)
    """deployment → version → its endpoints' states: what :meth:`explain` reads."""
    _alias_deployments: set[str] = field(default_factory=set)
    _observed: dict[str, datetime] = field(default_factory=dict)
    _drained: frozenset[str] = frozenset()
    alias_revisions: dict[str, int] = field(default_factory=dict)
    """The state-of-record revision of each alias held (what heartbeats report)."""
    region_order: tuple[str, ...] = ()
    """Regions nearest first: where a request fails over when its preferred region has none."""
    _ordered: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """(route key, preferred region) → upstreams in preference order; emptied on any change."""

    @property
    def drained(self) -> frozenset[str]:
        """Regions an operator drained: they serve only when no other region can."""
        return self._drained

    @drained.setter
    def drained(self, regions: frozenset[str]) -> None:
        self._drained = regions
        self._ordered = {}

    def known_routes(self) -> list[Route]:
        """Every route held: those that serve and those that do not."""
        return [*self.routes.values(), *self._idle.values()]

    def replace_with(self, fresh: RouteTable) -> None:
        """Take every table of ``fresh`` at once (a request sees old or new, never a mix),
        but for aliases held at a later revision than ``fresh`` has: the alias watch may be
        ahead of Redis, and heartbeats have already reported those revisions."""
        for key, alias in self.aliases.items():
            revision = self.alias_revisions.get(key, 0)
            if revision > fresh.alias_revisions.get(key, 0):
                fresh.aliases[key] = alias
                fresh.alias_revisions[key] = revision
                fresh._alias_deployments.add(key.rpartition("/")[0])
        self.routes, self._by_key, self._idle = fresh.routes, fresh._by_key, fresh._idle
        self._versions, self._alias_deployments = fresh._versions, fresh._alias_deployments
        self.aliases, self._observed = fresh.aliases, fresh._observed
        self.drained = fresh.drained
        self.alias_revisions = fresh.alias_revisions
        self.loaded = True

    def put(self, route: Route) -> bool:
        """Insert or replace one route (one without upstreams is kept aside, known but not
        serving); False, changing nothing, when it was observed before the one held, as a
        late redelivery would be."""
        seen = self._observed.get(route.field)
        if seen is not None and route.observed_at is not None and route.observed_at < seen:
            return False
        if route.observed_at is not None:
            self._observed[route.field] = route.observed_at
        self.remove(route.field)
        self._ordered = {}
        deployment, version, endpoint = route.key.rsplit("/", 2)
        state = route.state or (WorkloadState.READY if route.upstreams else WorkloadState.FAILED)
        versions = self._versions.setdefault(deployment, {})
        versions.setdefault(version, {}).setdefault(endpoint, {})[route.target] = state
        if not route.upstreams:
            self._idle[route.field] = route
            return True
        self.routes[route.field] = route
        self._by_key.setdefault(route.key, {})[route.target] = route
        return True

    def remove(self, field_name: str) -> None:
        """Forget one route by its field (whether it served or not)."""
        self._idle.pop(field_name, None)
        route = self.routes.pop(field_name, None)
        if route is None:
            return
        self._ordered = {}
        targets = self._by_key.get(route.key, {})
        targets.pop(route.target, None)
        if not targets:
            self._by_key.pop(route.key, None)

    def put_alias(self, alias: Alias, revision: int = 0) -> bool:
        """Insert or replace an alias, whole; False (and nothing changes) when it is older
        than the one held, as a late redelivered event would be. Older means an earlier
        state-of-record revision when both are known (clocks of two API processes may
        disagree), else an earlier ``updated_at``."""
        key = alias_table_key(alias)
        held = self.aliases.get(key)
        held_revision = self.alias_revisions.get(key, 0)
        if held is not None:
            if revision and held_revision:
                if revision <= held_revision:
                    return False  # stored before the one held, or our own echo
            elif held.updated_at >= alias.updated_at:
                return False
        self.aliases[key] = alias
        self.alias_revisions[key] = revision or held_revision
        self._alias_deployments.add(f"{alias.owner}/{alias.project}/{alias.deployment}")
        return True

    def resolve(self, raw_path: str, own_region: str, draw: float) -> Resolution | None:
        """The upstreams for a request path, own region first; None when nothing serves it
        (:meth:`explain` says why).

        A version name is looked up directly; otherwise an alias of that name chooses the
        version (by its override for ``own_region``, and ``draw`` for a weighted split).
        """
        path = split_request_path(raw_path)
        if path is None:
            return None
        version, alias = path.name, None
        targets = self._by_key.get(path.route_key(version))
        if not targets:
            found = self.aliases.get(f"{path.deployment}/{path.name}")
            if found is None:
                return None
            alias = found.name
            version = pick_version(found.target_in(own_region), draw)
            targets = self._by_key.get(path.route_key(version))
            if not targets:
                return None
        key = path.route_key(version)
        upstreams = self._ordered.get((key, own_region))
        if upstreams is None:
            upstreams = self._order(targets, own_region)
            # Bounded: the preferred region may come from a client's header.
            if len(self._ordered) < _ORDER_CACHE_LIMIT:
                self._ordered[(key, own_region)] = upstreams
        return Resolution(
            key=key,
            version=version,
            upstreams=upstreams,
            rest=path.rest,
            prefix=path.prefix,
            alias=alias,
        )

    def explain(self, raw_path: str, own_region: str, draw: float) -> Miss:
        """Why :meth:`resolve` found nothing for this path (called with the same arguments).

        It names only what the path names, and the endpoints of a version the path names
        (they are public in the URL space anyway): never another deployment, version or
        alias, so a caller learns nothing about names it did not guess.
        """
        path = split_request_path(raw_path)
        if path is None:
            return Miss(404, "not-found", f"{_NOT_A_MODEL_PATH}; {raw_path} is not one")
        deployment, name, endpoint = path.deployment, path.name, path.endpoint
        versions = self._versions.get(deployment)
        if versions is None and deployment not in self._alias_deployments:
            return Miss(
                404,
                "unknown-deployment",
                f"no deployment {deployment} serves here: check the owner, project and "
                "deployment in the path",
            )
        versions = versions or {}
        alias = None if name in versions else self.aliases.get(f"{deployment}/{name}")
        if alias is not None:
            version = pick_version(alias.target_in(own_region), draw)
            subject = f"alias {name} of {deployment} points to version {version}, which"
        elif name in versions:
            version = name
            subject = f"version {version} of {deployment}"
        else:
            return Miss(
                404,
                "unknown-version",
                f"deployment {deployment} has no version or alias named {name}",
            )
        endpoints = versions.get(version)
        if endpoints is None:  # an alias to a version that never ran here
            return Miss(503, "not-serving", f"{subject} does not serve")
        if all(s is WorkloadState.STOPPED for e in endpoints.values() for s in e.values()):
            if alias is not None:
                return Miss(503, "version-stopped", f"{subject} was stopped")
            return Miss(410, "version-stopped", f"{subject} was stopped and serves no more")
        states = endpoints.get(endpoint)
        if states is None:
            listed = ", ".join(sorted(endpoints))
            return Miss(
                404,
                "unknown-endpoint",
                f"{subject} has no endpoint {endpoint} (its endpoints: {listed})",
            )
        seen = ", ".join(sorted({state.value for state in states.values()}))
        retry = _RETRY_STARTING_S if any(s in _STARTING for s in states.values()) else None
        whose = f"{subject.removesuffix(' which')} whose" if alias else f"{subject}:"
        return Miss(
            503, "not-ready", f"{whose} endpoint {endpoint} has no ready replica ({seen})", retry
        )

    def _order(self, targets: dict[str, Route], preferred: str) -> list[tuple[str, str]]:
        """Upstreams of the preferred region first, then the others nearest first (the
        configured order, then by name); drained regions only when nothing else serves."""
        nearest = {region: rank for rank, region in enumerate(self.region_order, start=1)}
        far = len(nearest) + 1
        ordered = sorted(
            targets.values(),
            key=lambda r: (
                r.region in self.drained,
                0 if r.region == preferred else nearest.get(r.region, far),
                r.region,
                r.target,
            ),
        )
        if any(r.region not in self.drained for r in ordered):
            ordered = [r for r in ordered if r.region not in self.drained]
        return [(r.region, url) for r in ordered for url in r.upstreams]
