"""The ops API under ``/_ops`` (platform admin token): regions and route resolution, read
from this process's tables.

A region is drained through the API (``PUT /v1/regions/{region}``): drain is state of
record, which every router follows. The router's own drain and undrain of earlier
releases answer 405 saying so.

``/metrics`` answers to the same token: its labels name every deployment, version and
alias the router has served, whoever owns them."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from aiohttp import web

from dockyard_router.paths import split_request_path
from dockyard_router.problems import MEDIA_TYPE, problem_body
from dockyard_router.settings import RouterSettings
from dockyard_router.tables import RouteTable

__all__ = ["admin_only", "ops_routes"]


def _problem(status: int, slug: str, detail: str, **headers: str) -> web.Response:
    return web.Response(
        body=problem_body(status, slug, detail),
        status=status,
        headers={"Content-Type": MEDIA_TYPE, **headers},
    )


def admin_only(
    settings: RouterSettings, what: str = "the ops API"
) -> Callable[[web.Request], web.Response | None]:
    """A check of the platform admin bearer token: the refusal to answer (404 when no admin
    token is set, 401 when another is sent), or None for the admin."""
    expected = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def refused(request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if expected is None:
            return _problem(404, "not-found", f"{what} is off: no admin token is set")
        if not secrets.compare_digest(given.encode(), expected):
            return _problem(401, "unauthenticated", "send the platform admin bearer token")
        return None

    return refused


def ops_routes(
    table: RouteTable, settings: RouterSettings, healthy: Callable[[str], bool] = lambda _: True
) -> web.RouteTableDef:
    """The ops endpoints, bound to this process's tables; ``healthy`` says whether this
    process currently sends requests to an upstream (it sets aside failing ones)."""
    routes = web.RouteTableDef()
    refused = admin_only(settings)

    @routes.get("/_ops/regions")
    async def regions(request: web.Request) -> web.Response:
        """Every region with the routes it serves and whether it is drained."""
        if (answer := refused(request)) is not None:
            return answer
        routes: dict[str, int] = {}
        upstreams: dict[str, int] = {}
        healthy_upstreams: dict[str, int] = {}
        targets: dict[str, set[str]] = {}
        for route in table.routes.values():
            routes[route.region] = routes.get(route.region, 0) + 1
            upstreams[route.region] = upstreams.get(route.region, 0) + len(route.upstreams)
            healthy_upstreams[route.region] = healthy_upstreams.get(route.region, 0) + sum(
                map(healthy, route.upstreams)
            )
            targets.setdefault(route.region, set()).add(route.target)
        items = [
            {
                "region": name,
                "routes": routes.get(name, 0),
                "upstreams": upstreams.get(name, 0),
                "healthy_upstreams": healthy_upstreams.get(name, 0),
                "targets": sorted(targets.get(name, set())),
                "drained": name in table.drained,
                "local": name == settings.region,
            }
            for name in sorted(set(routes) | table.drained | {settings.region})
        ]
        return web.json_response({"items": items, "next": None})

    @routes.post("/_ops/regions/{region}/drain")
    @routes.post("/_ops/regions/{region}/undrain")
    async def drain(request: web.Request) -> web.Response:
        """Moved: a region's drain is state of record, set through the API."""
        if (answer := refused(request)) is not None:
            return answer
        region = request.match_info["region"]
        drained = request.path.endswith("/drain")
        return _problem(
            405,
            "drain-moved-to-api",
            f"a region is drained through the API, which every router follows: PUT "
            f'/v1/regions/{region} with {{"drained": {str(drained).lower()}}} '
            f"(dockyard regions {'drain' if drained else 'undrain'} {region})",
            Allow="",
        )

    @routes.get("/_ops/resolve")
    async def resolve(request: web.Request) -> web.Response:
        """Where a request path would go from this router, without sending it."""
        if (answer := refused(request)) is not None:
            return answer
        path = request.query.get("path", "")
        if split_request_path(path) is None:
            return _problem(
                422,
                "invalid-input",
                "give path=/<owner>/<project>/<deployment>/<version>/<endpoint>/...",
            )
        region = request.query.get("region") or settings.region
        resolution = table.resolve(path, region, draw=0.0)
        if resolution is None:
            if not table.loaded:
                return _problem(503, "no-table", "this router process has no route table yet")
            miss = table.explain(path, region, draw=0.0)
            return _problem(miss.status, miss.slug, miss.detail)
        return web.json_response(
            {
                "path": path,
                "version": resolution.version,
                "alias": resolution.alias,
                "route": resolution.key,
                "rest": resolution.rest,
                "upstreams": [{"region": r, "url": u} for r, u in resolution.upstreams],
            }
        )

    return routes
