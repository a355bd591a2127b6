"""The data plane: forwards ``/<owner>/<project>/<deployment>/<version>/<endpoint>/...``.

Upstream URLs come only from the route table; the request's rest path is appended to the
upstream's path already encoded, so no request can change the upstream's host or scheme.
"""

from __future__ import annotations

import random
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from dockyard_common import get_logger
from dockyard_router.metrics import RouterMetrics
from dockyard_router.settings import RouterSettings
from dockyard_router.tables import Resolution, RouteTable, client_draw

__all__ = ["HOP_BY_HOP", "Proxy", "upstream_url"]

log = get_logger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_CHUNK = 64 * 1024


def upstream_url(upstream: str, rest: str, raw_query: str) -> URL:
    """``upstream`` with the encoded ``rest`` path and query; the host is the upstream's only."""
    base = URL(upstream)
    return URL.build(
        scheme=base.scheme,
        host=base.raw_host or "",
        port=base.port,
        path="/" + rest,
        query_string=raw_query,
        encoded=True,
    )


_PROBLEMS = {
    404: ("not-found", "Not found"),
    502: ("bad-gateway", "Bad gateway"),
    504: ("gateway-timeout", "Gateway timeout"),
}


def _problem(status: int, detail: str) -> web.Response:
    slug, title = _PROBLEMS[status]
    return web.json_response(
        {
            "type": f"https://dockyard.dev/problems/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
        },
        status=status,
        content_type="application/problem+json",
    )


class Proxy:
    """Forwards requests to the upstreams the route table names."""

    def __init__(self, table: RouteTable, settings: RouterSettings, metrics: RouterMetrics) -> None:
        self._table = table
        self._settings = settings
        self._metrics = metrics
        # Created inside the running event loop (the router's serve()).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._settings.upstream_connections, keepalive_timeout=30
            ),
            timeout=aiohttp.ClientTimeout(
                total=self._settings.upstream_timeout_s, sock_connect=2.0
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        """Close the upstream connection pool."""
        await self._session.close()

    def _headers(self, request: web.Request, resolution: Resolution) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        previous = request.headers.get("X-Forwarded-For")
        peer = request.remote or ""
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Host"] = request.host
        headers["X-VH-Prefix"] = resolution.prefix
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request; retry once elsewhere only for a connection failure of an
        idempotent request without a body."""
        # A client may prefer a region; otherwise the router's own region comes first.
        region = request.headers.get("X-Dockyard-Region") or self._settings.region
        client = request.headers.get("X-Dockyard-Client-Key")
        draw = client_draw(client) if client else random.random()  # noqa: S311 - traffic split
        resolution = self._table.resolve(request.rel_url.raw_path, region, draw)
        if resolution is None:
            self._metrics.unrouted.inc()
            return _problem(404, f"nothing serves {request.rel_url.raw_path}")
        started = time.perf_counter()
        response = await self._forward(request, resolution)
        labels = resolution.labels(response.headers.get("X-Dockyard-Region", ""))
        self._metrics.requests.labels(*labels, str(response.status)).inc()
        self._metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        return response

    async def _forward(self, request: web.Request, resolution: Resolution) -> web.StreamResponse:
        retryable = request.method in _IDEMPOTENT and not request.can_read_body
        candidates = resolution.upstreams[: 2 if retryable else 1]
        headers = self._headers(request, resolution)
        last_error = ""
        for region, upstream in candidates:
            url = upstream_url(upstream, resolution.rest, request.rel_url.raw_query_string)
            try:
                upstream_response = await self._session.request(
                    request.method,
                    url,
                    headers=headers,
                    allow_redirects=False,
                    data=request.content if request.can_read_body else None,
                )
            except aiohttp.ClientConnectionError as exc:
                last_error = f"{upstream}: {exc}"
                log.warning("proxy.upstream.unreachable", upstream=upstream, error=str(exc))
                self._metrics.upstream_errors.labels(*resolution.labels(region), "connect").inc()
                continue
            except TimeoutError:
                log.warning("proxy.upstream.timeout", upstream=upstream)
                self._metrics.upstream_errors.labels(*resolution.labels(region), "timeout").inc()
                return _problem(
                    504,
                    f"{resolution.key} did not answer within "
                    f"{self._settings.upstream_timeout_s:g} s",
                )
            async with upstream_response:
                return await self._relay(request, upstream_response, resolution, region)
        return _problem(502, f"no upstream of {resolution.key} answered ({last_error})")

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        resolution: Resolution,
        region: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP:
                response.headers.add(key, value)
        if upstream.content_length is not None and "Transfer-Encoding" not in upstream.headers:
            response.content_length = upstream.content_length
        response.headers["X-Dockyard-Version"] = resolution.version
        if resolution.alias is not None:
            response.headers["X-Dockyard-Alias"] = resolution.alias
        response.headers["X-Dockyard-Region"] = region
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
