"""Wiring: the tables and their feeds, the proxy, the router's own pages, the tasks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel
from structlog.contextvars import bind_contextvars

from dockyard_common import RouterHeartbeat, configure_logging, get_logger
from dockyard_common.runtime import cancellable, connect_redis
from dockyard_router.feeds import FEEDS, Feed, Mirror, RecordFeeds, follow_record
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.traffic import Waker, publish_traffic
from dockyard_router.front import FrontConnection, front_factory, sweep_connections
from dockyard_router.meter import TrafficMeter, router_id
from dockyard_router.metrics import CONTENT_TYPE, RouterMetrics
from dockyard_router.ops import admin_only, ops_routes
from dockyard_router.proxy import Proxy
from dockyard_router.routed import RoutedAlias
from dockyard_router.settings import RouterSettings
from dockyard_router.tables import RouteTable

__all__ = ["serve"]

log = get_logger(__name__)

_DRAIN_S = 30.0
"""How long requests under way may take to finish once the router is asked to stop."""
_LOAD_WAIT_S = 10.0
"""How long a starting process waits for its tables before it takes connections anyway
(answering 503 until they come): the other workers on the port serve meanwhile."""


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(
    settings: RouterSettings, stop: asyncio.Event, ready: Callable[[], None] | None = None
) -> None:
    """Serve until ``stop`` is set; in-flight requests finish before the process ends.
    ``ready()`` once the port is open, with the tables loaded from the record (or the
    Redis mirror while NATS is away), or neither answering within a bound: paths that do
    not resolve then get 503 until one does."""
    configure_logging(service="router", log_format=settings.log_format, level=settings.log_level)
    if settings.router_worker is not None:
        bind_contextvars(worker=settings.router_worker)
    redis = connect_redis(settings.redis_url)
    metrics = RouterMetrics()
    table = RouteTable(loaded=False, region_order=tuple(settings.region_order))
    loaded = asyncio.Event()

    def tables_loaded() -> None:
        table.loaded = True
        loaded.set()

    def applied(feed: Feed[Any], value: BaseModel | None) -> None:
        proxy.routes_changed()  # the proxy exists before the feeds apply anything
        if feed is ALIASES and isinstance(value, RoutedAlias):
            deployment = f"{value.owner}/{value.project}/{value.deployment}"
            metrics.alias_switches.labels(deployment, value.name).inc()

    def beat(process: str, applied_through: int) -> RouterHeartbeat:
        return RouterHeartbeat(
            process=process, region=settings.region, applied_through=applied_through
        )

    # One writer of the Redis mirror per router: its first worker, or its only process.
    writes_mirror = settings.router_worker in (None, 0)
    mirror = Mirror(redis, table, FEEDS, writes=writes_mirror)
    feeds = RecordFeeds(table, mirror, tables_loaded, on_applied=applied)
    serving = asyncio.Event()
    admin = admin_only(settings, "/metrics")

    async def metrics_page(request: web.Request) -> web.Response:
        # Its labels name every owner's deployments, versions and aliases.
        if (refusal := admin(request)) is not None:
            return refusal
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    # The router's own pages run on aiohttp on a loopback port of this process; the data
    # plane in front of it passes /_ops, /metrics and /healthz there.
    app = web.Application(client_max_size=0)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", metrics_page)

    def healthy(upstream: str) -> bool:
        return proxy.healthy(upstream)  # the proxy exists before the first request

    app.router.add_routes(ops_routes(table, settings, healthy))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    internal = web.TCPSite(runner, "127.0.0.1", 0)
    await internal.start()
    internal_port = runner.addresses[0][1]
    meter, waker = TrafficMeter(), Waker()
    proxy = Proxy(
        table,
        settings,
        metrics,
        internal=f"http://127.0.0.1:{internal_port}",
        meter=meter,
        wake=waker,
    )
    me = router_id(settings.router_worker)

    async def traffic(nc: NatsClient) -> None:
        waker.attach(nc)
        await publish_traffic(nc, meter, me, settings.region)

    connections: set[FrontConnection] = set()
    server: asyncio.Server | None = None
    try:
        # The port first: a router that cannot have it ends here, before its background
        # work starts. Connections are taken once the tables are loaded.
        server = await _listen(
            settings,
            front_factory(
                proxy.handle,
                connections,
                settings.client_connections,
                metrics.connections_refused.inc,
            ),
        )
        background = [
            lambda: follow_record(settings.nats_url, feeds, mirror, serving, beat, traffic),
            lambda: sweep_connections(
                connections,
                settings.client_idle_timeout_s,
                settings.client_head_timeout_s,
                min(1.0, settings.client_head_timeout_s / 4, settings.client_idle_timeout_s / 2),
            ),
        ]
        if writes_mirror:
            background.append(mirror.keep_written)
        async with asyncio.TaskGroup() as tasks:
            # Each cancellable for sure: a Redis command can swallow a cancellation.
            workers = [tasks.create_task(cancellable(work)) for work in background]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_LOAD_WAIT_S):
                    await loaded.wait()
            if not loaded.is_set():
                log.warning("router.tables.not_loaded", waited_s=_LOAD_WAIT_S)
            await server.start_serving()
            serving.set()
            # What start-up allocated (modules, schemas, the tables) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise pause the
            # process for tens of milliseconds (measured: ~40 ms for the ~70k objects).
            gc.freeze()
            log.info(
                "router.started",
                host=socket.gethostname(),
                port=settings.router_port,
                region=settings.region,
                tables_loaded=table.loaded,
            )
            if ready is not None:
                ready()
            await stop.wait()
            await _drain(server, connections)
            for worker in workers:
                worker.cancel()
    finally:
        if server is not None:
            server.close()
        proxy.close()
        await runner.cleanup()
        await redis.aclose()


async def _listen(
    settings: RouterSettings, connection: Callable[[], asyncio.Protocol]
) -> asyncio.Server:
    """The socket the supervisor handed over, or the port bound (shared by the router's
    workers through SO_REUSEPORT); not serving until ``start_serving()``."""
    loop = asyncio.get_running_loop()
    if settings.router_listen_fd is not None:
        inherited = socket.socket(fileno=settings.router_listen_fd)
        return await loop.create_server(
            connection, sock=inherited, backlog=1024, start_serving=False
        )
    return await loop.create_server(
        connection,
        settings.router_host,
        settings.router_port,
        reuse_port=True,
        backlog=1024,
        start_serving=False,
    )


async def _drain(server: asyncio.Server, connections: set[FrontConnection]) -> None:
    """Stop taking connections; let requests under way finish (bounded), then close."""
    server.close()
    for connection in list(connections):
        connection.close_when_idle()
    deadline = time.monotonic() + _DRAIN_S
    # Polled: connections end in protocol callbacks, and this runs once, at shutdown.
    while connections and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if connections:
        log.warning("router.drain.cut", connections=len(connections))
