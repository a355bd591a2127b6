"""The ops API under ``/_ops`` (platform admin token): regions, drain, route resolution.

``/metrics`` answers to the same token: its labels name every deployment, version and
alias the router has served, whoever owns them."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from aiohttp import web

from dockyard_common import TransientError
from dockyard_router.settings import RouterSettings
from dockyard_router.store import RouteStore
from dockyard_router.tables import split_request_path

__all__ = ["admin_only", "ops_routes"]


def _problem(status: int, slug: str, detail: str) -> web.Response:
    return web.json_response(
        {
            "type": f"https://dockyard.dev/problems/{slug}",
            "title": slug.replace("-", " "),
            "status": status,
            "detail": detail,
        },
        status=status,
        content_type="application/problem+json",
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
    store: RouteStore, settings: RouterSettings, healthy: Callable[[str], bool] = lambda _: True
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
        table = store.table
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

    async def set_drained(request: web.Request, drained: bool) -> web.Response:
        if (answer := refused(request)) is not None:
            return answer
        region = request.match_info["region"]
        try:
            await store.set_drained(region, drained)
        except TransientError as exc:
            return _problem(503, "unavailable", str(exc))
        return web.json_response({"region": region, "drained": drained})

    @routes.post("/_ops/regions/{region}/drain")
    async def drain(request: web.Request) -> web.Response:
        """Move new traffic out of a region (requests in flight finish)."""
        return await set_drained(request, True)

    @routes.post("/_ops/regions/{region}/undrain")
    async def undrain(request: web.Request) -> web.Response:
        """Let a drained region take traffic again."""
        return await set_drained(request, False)

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
        resolution = store.table.resolve(path, region, draw=0.0)
        if resolution is None:
            if not store.table.loaded:
                return _problem(503, "no-table", "this router process has no route table yet")
            miss = store.table.explain(path, region, draw=0.0)
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
