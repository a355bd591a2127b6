"""The route table and how a request path resolves against it: pure, no I/O.

The table holds what the feeds (:mod:`dockyard_router.feeds`) take from the state of
record, each entry at the revision of the write it came from; a write older than the
entry held changes nothing:

- **versions**: a version's routes, one per endpoint and target, with the target's region;
  a ready endpoint of a version that is not stopped has upstreams. A version's write
  replaces all its routes at once.
- **aliases**: where each alias points (per region, by weight).
- **regions**: the regions an operator drained, which serve only when no other can.

A request resolves to the upstreams of its endpoint, those of the router's own region
first. Routes that do not serve (deploying, failed, stopped) and stopped versions are
remembered too, so that a path that does not resolve can be told why
(:meth:`RouteTable.explain`): which part of it is unknown, or that its version was stopped,
or has no ready replica yet.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from dockyard_common.models import VersionStatus, WorkloadState
from dockyard_router.paths import pick_version, split_request_path
from dockyard_router.routed import RoutedAlias, RoutedRegion, RoutedVersion

__all__ = ["IdleRoute", "Miss", "Resolution", "Route", "RouteTable", "routes_of"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one endpoint of one version runs on one target (no upstreams: not serving)."""

    key: str
    """``owner/project/deployment/version/endpoint``."""
    target: str
    region: str
    upstreams: tuple[str, ...]
    state: WorkloadState

    @property
    def field(self) -> str:
        """The route's identity in the table: ``<key>|<target>``."""
        return f"{self.key}|{self.target}"


def routes_of(version: RoutedVersion) -> list[Route]:
    """The routes a version's record implies: one per endpoint state it holds. Only a ready
    endpoint of a version that is not stopped has upstreams; every endpoint of a stopped
    version reads as stopped, whatever its last report said."""
    stopped = version.status is VersionStatus.STOPPED
    return [
        Route(
            key=f"{version.table_key}/{state.endpoint}",
            target=state.target,
            region=state.region,
            upstreams=(
                tuple(state.upstreams) if state.state is WorkloadState.READY and not stopped else ()
            ),
            state=WorkloadState.STOPPED if stopped else state.state,
        )
        for state in version.endpoint_states
    ]


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
class IdleRoute:
    """An endpoint a path names that is scaled to zero (``idle``) where it would serve: a
    request for it is held while the scheduler starts a replica."""

    key: str
    """``owner/project/deployment/version/endpoint``."""
    version: str
    endpoint: str
    region: str
    """Where to start one: the preferred region if the endpoint idles there."""

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment)."""
        owner, project, deployment = self.key.split("/", 3)[:3]
        return owner, project, deployment


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


_ORDER_CACHE_LIMIT = 10_000
_NOT_A_MODEL_PATH = (
    "a model is called at /<owner>/<project>/<deployment>/<version or alias>/<endpoint>/..."
)
_STARTING = frozenset({WorkloadState.PENDING, WorkloadState.DEPLOYING})
_RETRY_STARTING_S = 5


@dataclass
class RouteTable:
    """The in-process tables of one router process; read per request."""

    loaded: bool = True
    """False in a process whose feeds have not caught up with the record yet (nor loaded
    the Redis mirror): a path it cannot resolve may then be one it would, and is answered
    503."""
    region_order: tuple[str, ...] = ()
    """Regions nearest first: where a request fails over when its preferred region has none."""
    routes: dict[str, Route] = field(default_factory=dict)
    """The routes that serve (with upstreams), by field."""
    aliases: dict[str, RoutedAlias] = field(default_factory=dict)
    """By ``owner/project/deployment/alias``."""
    version_revisions: dict[str, int] = field(default_factory=dict)
    """The record revision of each version entry (a deleted version's too), by
    ``owner/project/deployment/version``."""
    alias_revisions: dict[str, int] = field(default_factory=dict)
    region_revisions: dict[str, int] = field(default_factory=dict)
    _by_key: dict[str, dict[str, Route]] = field(default_factory=dict)
    """Serving routes: route key → target → route."""
    _serving: dict[str, list[Route]] = field(default_factory=dict)
    """Each version's serving routes, by version key: what its next write replaces."""
    _held: dict[str, RoutedVersion] = field(default_factory=dict)
    """Every version held, by version key."""
    _explained: dict[str, dict[str, RoutedVersion]] = field(default_factory=dict)
    """deployment → version → the version, for those that ran on a target or were
    stopped: what :meth:`explain` reads."""
    _alias_deployments: set[str] = field(default_factory=set)
    _regions: dict[str, RoutedRegion] = field(default_factory=dict)
    _drained: frozenset[str] = frozenset()
    _ordered: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """(route key, preferred region) → upstreams in preference order; emptied on any change."""

    @property
    def drained(self) -> frozenset[str]:
        """Regions an operator drained: they serve only when no other region can."""
        return self._drained

    # -- taking writes of the record (each True when it changed the table) --

    def put_version(self, key: str, revision: int, version: RoutedVersion | None) -> bool:
        """Replace every route of the version ``key`` (``owner/project/deployment/version``)
        with those of its write at ``revision`` (None: deleted); False, changing nothing,
        when the entry held is from that revision or a later one, or holds the same (only
        its revision moves: an alias switch rewrites the versions it names unchanged)."""
        if revision <= self.version_revisions.get(key, 0):
            return False
        self.version_revisions[key] = revision
        if version is not None and self._held.get(key) == version:
            return False
        self._forget_version(key)
        if version is None:
            return True
        self._held[key] = version
        if version.endpoint_states or version.status is VersionStatus.STOPPED:
            self._explained.setdefault(version.deployment_path, {})[version.name] = version
        serving = [route for route in routes_of(version) if route.upstreams]
        for route in serving:
            self.routes[route.field] = route
            self._by_key.setdefault(route.key, {})[route.target] = route
        if serving:
            self._serving[key] = serving
        return True

    def put_alias(self, key: str, revision: int, alias: RoutedAlias | None) -> bool:
        """Take the alias ``key`` (``owner/project/deployment/alias``) as written at
        ``revision`` (None: deleted); False when the one held is as recent."""
        if revision <= self.alias_revisions.get(key, 0):
            return False
        self.alias_revisions[key] = revision
        if alias is None:
            self._forget_alias(key)
        else:
            self.aliases[key] = alias
            self._alias_deployments.add(key.rpartition("/")[0])
        return True

    def put_region(self, key: str, revision: int, region: RoutedRegion | None) -> bool:
        """Take a region's drain as written at ``revision`` (None: deleted, so not drained);
        False when the one held is as recent."""
        if revision <= self.region_revisions.get(key, 0):
            return False
        self.region_revisions[key] = revision
        if region is None:
            self._regions.pop(key, None)
        else:
            self._regions[key] = region
        self._set_drained()
        return True

    def keep_versions(self, keys: Collection[str]) -> None:
        """Forget the versions held but for ``keys``: what the versions feed did not see
        while catching up is no longer in the record."""
        for key in [k for k in self._held if k not in keys]:
            self._forget_version(key)
            del self.version_revisions[key]

    def keep_aliases(self, keys: Collection[str]) -> None:
        """Forget the aliases held but for ``keys`` (see :meth:`keep_versions`)."""
        for key in [k for k in self.aliases if k not in keys]:
            self._forget_alias(key)
            del self.alias_revisions[key]

    def keep_regions(self, keys: Collection[str]) -> None:
        """Forget the regions held but for ``keys`` (see :meth:`keep_versions`)."""
        for key in [k for k in self._regions if k not in keys]:
            del self._regions[key]
            del self.region_revisions[key]
        self._set_drained()

    # -- what the mirror writes --

    def held_versions(self) -> list[tuple[str, int, RoutedVersion]]:
        """Every version held: (key, revision, version)."""
        return [(key, self.version_revisions[key], v) for key, v in self._held.items()]

    def held_aliases(self) -> list[tuple[str, int, RoutedAlias]]:
        """Every alias held: (key, revision, alias)."""
        return [(key, self.alias_revisions[key], a) for key, a in self.aliases.items()]

    def held_regions(self) -> list[tuple[str, int, RoutedRegion]]:
        """Every region an operator drained or undrained: (key, revision, region)."""
        return [(key, self.region_revisions[key], r) for key, r in self._regions.items()]

    # -- per request --

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

    def idle(self, raw_path: str, own_region: str, draw: float) -> IdleRoute | None:
        """The idle endpoint a path that :meth:`resolve` found nothing for names (called
        with the same arguments); None when it names none (:meth:`explain` says why)."""
        path = split_request_path(raw_path)
        if path is None:
            return None
        versions = self._explained.get(path.deployment) or {}
        version = path.name
        if version not in versions:
            alias = self.aliases.get(f"{path.deployment}/{path.name}")
            if alias is None:
                return None
            version = pick_version(alias.target_in(own_region), draw)
        held = versions.get(version)
        if held is None:
            return None
        key = path.route_key(version)
        idle = [r for r in routes_of(held) if r.key == key and r.state is WorkloadState.IDLE]
        if not idle:
            return None
        nearest = {region: rank for rank, region in enumerate(self.region_order, start=1)}
        best = min(
            idle,
            key=lambda r: (
                r.region in self._drained,
                0 if r.region == own_region else nearest.get(r.region, len(nearest) + 1),
                r.region,
            ),
        )
        return IdleRoute(key=key, version=version, endpoint=path.endpoint, region=best.region)

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
        versions = self._explained.get(deployment)
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
        held = versions.get(version)
        if held is None:  # an alias to a version that never ran here
            return Miss(503, "not-serving", f"{subject} does not serve")
        endpoints: dict[str, list[WorkloadState]] = {}
        for route in routes_of(held):
            endpoints.setdefault(route.key.rpartition("/")[2], []).append(route.state)
        if all(s is WorkloadState.STOPPED for states in endpoints.values() for s in states):
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
        seen = ", ".join(sorted({state.value for state in states}))
        retry = _RETRY_STARTING_S if any(s in _STARTING for s in states) else None
        whose = f"{subject.removesuffix(' which')} whose" if alias else f"{subject}:"
        return Miss(
            503, "not-ready", f"{whose} endpoint {endpoint} has no ready replica ({seen})", retry
        )

    # -- inside --

    def _forget_version(self, key: str) -> None:
        for route in self._serving.pop(key, ()):
            self.routes.pop(route.field, None)
            targets = self._by_key.get(route.key)
            if targets is not None:
                targets.pop(route.target, None)
                if not targets:
                    del self._by_key[route.key]
        held = self._held.pop(key, None)
        if held is not None:
            versions = self._explained.get(held.deployment_path, {})
            versions.pop(held.name, None)
            if not versions:
                self._explained.pop(held.deployment_path, None)
        self._ordered = {}

    def _forget_alias(self, key: str) -> None:
        if self.aliases.pop(key, None) is not None:
            self._alias_deployments = {k.rpartition("/")[0] for k in self.aliases}

    def _set_drained(self) -> None:
        self._drained = frozenset(r.name for r in self._regions.values() if r.drained)
        self._ordered = {}

    def _order(self, targets: dict[str, Route], preferred: str) -> list[tuple[str, str]]:
        """Upstreams of the preferred region first, then the others nearest first (the
        configured order, then by name); drained regions only when nothing else serves."""
        nearest = {region: rank for rank, region in enumerate(self.region_order, start=1)}
        far = len(nearest) + 1
        ordered = sorted(
            targets.values(),
            key=lambda r: (
                r.region in self._drained,
                0 if r.region == preferred else nearest.get(r.region, far),
                r.region,
                r.target,
            ),
        )
        if any(r.region not in self._drained for r in ordered):
            ordered = [r for r in ordered if r.region not in self._drained]
        return [(r.region, url) for r in ordered for url in r.upstreams]
