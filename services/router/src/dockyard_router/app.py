"""Wiring: Redis and NATS connections, the route table, the proxy, the background tasks."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Callable

from aiohttp import web
from structlog.contextvars import bind_contextvars

from dockyard_common import Alias, RouterHeartbeat, configure_logging, get_logger
from dockyard_common.runtime import (
    Heartbeat,
    cancellable,
    connect_nats,
    connect_redis,
    provision_jetstream,
)
from dockyard_common.subjects import ROUTER_HEARTBEAT_SUBJECT
from dockyard_router.front import FrontConnection, front_factory, sweep_connections
from dockyard_router.metrics import CONTENT_TYPE, RouterMetrics
from dockyard_router.ops import admin_only, ops_routes
from dockyard_router.proxy import Proxy
from dockyard_router.record import table_from_record, watch_alias_record
from dockyard_router.routing import follow_endpoint_states
from dockyard_router.settings import RouterSettings
from dockyard_router.store import RouteStore
from dockyard_router.tables import RouteTable

__all__ = ["serve"]

log = get_logger(__name__)

_DRAIN_S = 30.0
"""How long requests under way may take to finish once the router is asked to stop."""


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(
    settings: RouterSettings, stop: asyncio.Event, ready: Callable[[], None] | None = None
) -> None:
    """Serve until ``stop`` is set; in-flight requests finish before the process ends.
    ``ready()`` once the port is open, with the tables loaded from Redis or else from the
    state of record (or neither answering: unresolved paths then get 503 until one does)."""
    configure_logging(service="router", log_format=settings.log_format, level=settings.log_level)
    if settings.router_worker is not None:
        bind_contextvars(worker=settings.router_worker)
    redis = connect_redis(settings.redis_url)
    nc = await connect_nats(settings.nats_url, name="dockyard-router")
    js = nc.jetstream()
    await provision_jetstream(js)
    metrics = RouterMetrics()

    # Unloaded until whole tables come (from Redis, else the state of record): a path it
    # cannot resolve before then is answered 503, not 404.
    table = RouteTable(loaded=False)

    def beat(process: str, applied_through: int) -> RouterHeartbeat:
        return RouterHeartbeat(
            process=process, region=settings.region, applied_through=applied_through
        )

    heartbeat = Heartbeat(nc, ROUTER_HEARTBEAT_SUBJECT, beat)

    def switched(alias: Alias, _: int) -> None:
        deployment = f"{alias.owner}/{alias.project}/{alias.deployment}"
        metrics.alias_switches.labels(deployment, alias.name).inc()

    # One writer of Redis's alias table per router: its first worker, or its only process.
    saves_aliases = settings.router_worker in (None, 0)
    store = RouteStore(
        redis, table, lambda: table_from_record(js), switched, saves_aliases=saves_aliases
    )
    await store.load_at_start()
    store.table.region_order = tuple(settings.region_order)
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

    app.router.add_routes(ops_routes(store, settings, healthy))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    internal = web.TCPSite(runner, "127.0.0.1", 0)
    await internal.start()
    internal_port = runner.addresses[0][1]
    proxy = Proxy(store.table, settings, metrics, internal=f"http://127.0.0.1:{internal_port}")
    connections: set[FrontConnection] = set()
    server: asyncio.Server | None = None
    try:
        # The port first: a router that cannot have it ends here, before its background
        # work starts (which a failure inside the task group would have to cancel).
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
            store.follow,
            store.watch_tables,
            heartbeat.run,
            lambda: follow_endpoint_states(js, store),
            lambda: watch_alias_record(js, store.apply_alias, heartbeat.applied_through),
            lambda: sweep_connections(
                connections,
                settings.client_idle_timeout_s,
                settings.client_head_timeout_s,
                min(1.0, settings.client_head_timeout_s / 4, settings.client_idle_timeout_s / 2),
            ),
        ]
        if saves_aliases:
            background.append(store.save_aliases)
        async with asyncio.TaskGroup() as tasks:
            # Each cancellable for sure: a Redis command can swallow a cancellation.
            workers = [tasks.create_task(cancellable(work)) for work in background]
            # What start-up allocated (modules, schemas, the tables) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise pause the
            # process for tens of milliseconds (measured: ~40 ms for the ~70k objects).
            gc.freeze()
            log.info(
                "router.started",
                host=socket.gethostname(),
                port=settings.router_port,
                region=settings.region,
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
        await nc.drain()
        await redis.aclose()


async def _listen(
    settings: RouterSettings, connection: Callable[[], asyncio.Protocol]
) -> asyncio.Server:
    """Serve on the socket the supervisor handed over, or bind the port (shared by the
    router's workers through SO_REUSEPORT)."""
    loop = asyncio.get_running_loop()
    if settings.router_listen_fd is not None:
        inherited = socket.socket(fileno=settings.router_listen_fd)
        return await loop.create_server(connection, sock=inherited, backlog=1024)
    return await loop.create_server(
        connection, settings.router_host, settings.router_port, reuse_port=True, backlog=1024
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
