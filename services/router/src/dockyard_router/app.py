"""Wiring: Redis and NATS connections, the route table, the proxy, the background tasks."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from dockyard_common import (
    Alias,
    TransientError,
    configure_logging,
    connect_nats,
    connect_redis,
    get_logger,
    provision_jetstream,
)
from dockyard_router.heartbeat import Heartbeat
from dockyard_router.metrics import CONTENT_TYPE, RouterMetrics
from dockyard_router.ops import ops_routes
from dockyard_router.proxy import Proxy
from dockyard_router.record import table_from_record, watch_alias_record
from dockyard_router.routing import follow_endpoint_states
from dockyard_router.settings import RouterSettings
from dockyard_router.store import RouteStore
from dockyard_router.tables import RouteTable

__all__ = ["serve"]

log = get_logger(__name__)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(settings: RouterSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; in-flight requests finish before the process ends."""
    configure_logging(service="router", log_format=settings.log_format, level=settings.log_level)
    redis = connect_redis(settings.redis_url)
    nc = await connect_nats(settings.nats_url, name="dockyard-router")
    js = nc.jetstream()
    await provision_jetstream(js)
    metrics = RouterMetrics()

    table = RouteTable()
    heartbeat = Heartbeat(nc, table, settings.region)

    def switched(alias: Alias, _: int) -> None:
        deployment = f"{alias.owner}/{alias.project}/{alias.deployment}"
        metrics.alias_switches.labels(deployment, alias.name).inc()
        heartbeat.applied()

    store = RouteStore(redis, table, lambda: table_from_record(js), switched)
    try:
        await store.ensure_tables()
        log.info("routes.loaded", routes=await store.load())
    except TransientError as exc:
        log.warning("routes.load.failed", error=str(exc))
    proxy = Proxy(store.table, settings, metrics)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=0)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_routes(ops_routes(store, settings))
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.router_host, settings.router_port, reuse_port=True)
    try:
        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(store.follow()),
                tasks.create_task(store.watch_tables()),
                tasks.create_task(heartbeat.run()),
                tasks.create_task(follow_endpoint_states(js, store)),
                tasks.create_task(watch_alias_record(js, store.apply_alias)),
            ]
            await site.start()
            log.info(
                "router.started",
                host=socket.gethostname(),
                port=settings.router_port,
                region=settings.region,
            )
            await stop.wait()
            for worker in workers:
                worker.cancel()
    finally:
        await runner.cleanup()
        await proxy.close()
        await nc.drain()
        await redis.aclose()
