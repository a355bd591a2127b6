"""Wiring: settings → connections → stores → routes, and the background consumers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI

from dockyard_api import console
from dockyard_api.accounts import ApiToken, Owner, Project
from dockyard_api.applied import AppliedWatch
from dockyard_api.context import ApiContext
from dockyard_api.problems import (
    PROBLEM_RESPONSES,
    OversizeAsProblem,
    document_problems,
    install_problem_handlers,
)
from dockyard_api.relay import relay_announcements
from dockyard_api.retention import RetentionPolicy
from dockyard_api.routes import (
    aliases,
    blobs,
    deployments,
    events,
    health,
    logs,
    owners,
    projects,
    regions,
    starts,
    targets,
    versions,
    webhooks,
)
from dockyard_api.sessions import SessionStore
from dockyard_api.settings import ApiSettings
from dockyard_api.sweeper import run_sweeper
from dockyard_api.tracking import track_status
from dockyard_api.webhooks.models import Webhook
from dockyard_common import Alias, Deployment, Target, Version, VersionStatus, get_logger
from dockyard_common.platform_facts import Region
from dockyard_common.runtime import (
    Counter,
    EventPublisher,
    ResourceStore,
    connect_nats,
    provision_jetstream,
)
from dockyard_common.subjects import (
    ALIASES_BUCKET,
    BLOB_BUCKET,
    DEPLOYMENTS_BUCKET,
    OWNERS_BUCKET,
    PROJECTS_BUCKET,
    REGIONS_BUCKET,
    ROUTER_HEARTBEAT_SUBJECT,
    SEQUENCES_BUCKET,
    TARGETS_BUCKET,
    TOKENS_BUCKET,
    VERSIONS_BUCKET,
    WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT,
    WEBHOOKS_BUCKET,
)

__all__ = ["create_app"]

log = get_logger(__name__)


async def _open_context(settings: ApiSettings) -> ApiContext:
    nc = await connect_nats(settings.nats_url, name="dockyard-api")
    js = nc.jetstream()
    await provision_jetstream(js)
    return ApiContext(
        settings=settings,
        nats=nc,
        js=js,
        owners=await ResourceStore.open(js, OWNERS_BUCKET, Owner),
        tokens=await ResourceStore.open(js, TOKENS_BUCKET, ApiToken),
        projects=await ResourceStore.open(js, PROJECTS_BUCKET, Project),
        targets=await ResourceStore.open(js, TARGETS_BUCKET, Target),
        deployments=await ResourceStore.open(js, DEPLOYMENTS_BUCKET, Deployment),
        versions=await ResourceStore.open(js, VERSIONS_BUCKET, Version),
        aliases=await ResourceStore.open(js, ALIASES_BUCKET, Alias),
        sequences=await Counter.open(js, SEQUENCES_BUCKET),
        blobs=await js.object_store(BLOB_BUCKET),
        events=EventPublisher(js, source=f"{settings.event_source}/api"),
        routers=AppliedWatch(nc, ROUTER_HEARTBEAT_SUBJECT),
        dispatchers=AppliedWatch(nc, WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT),
        webhooks=await ResourceStore.open(js, WEBHOOKS_BUCKET, Webhook),
        regions=await ResourceStore.open(js, REGIONS_BUCKET, Region),
        console_sessions=await SessionStore.open(js, settings.console_session_ttl_s),
    )


def _is_ready(version: Version) -> bool:
    return version.status is VersionStatus.READY


def create_app(settings: ApiSettings) -> FastAPI:
    """The API application; connections open and consumers start in its lifespan."""
    if settings.instance_id is None:
        settings = settings.model_copy(update={"instance_id": secrets.token_hex(8)})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = await _open_context(settings)
        app.state.context = context
        log.info("api.started", port=settings.api_port)
        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(track_status(context)),
                tasks.create_task(relay_announcements(context.js, context.events)),
                tasks.create_task(context.routers.run()),
                tasks.create_task(context.dispatchers.run()),
                # What an alias switch checks, known without a round trip (routes/aliases.py).
                tasks.create_task(context.deployments.keep_current(context.nats)),
                # Only ready versions: a switch takes no other from memory, and stopped
                # versions stay in the bucket for good.
                tasks.create_task(context.versions.keep_current(context.nats, holds=_is_ready)),
                tasks.create_task(context.aliases.keep_current(context.nats)),
            ]
            if settings.retention_sweep_every_s > 0:
                policy = RetentionPolicy(
                    keep_changes=settings.retention_alias_changes,
                    grace=timedelta(seconds=settings.retention_grace_s),
                )
                sweeper = run_sweeper(
                    context.deployments,
                    context.versions,
                    context.aliases,
                    policy,
                    settings.retention_sweep_every_s,
                )
                workers.append(tasks.create_task(sweeper))
            # What start-up allocated lives as long as the process: keep it out of the
            # collector's full passes, which otherwise pause requests (an alias switch among
            # them) for milliseconds.
            gc.freeze()
            try:
                yield
            finally:
                for worker in workers:
                    worker.cancel()
        await context.nats.drain()

    app = FastAPI(
        title="Dockyard API",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    document_problems(app)
    app.add_middleware(OversizeAsProblem)
    app.include_router(health.router, responses={503: PROBLEM_RESPONSES[503]})
    app.include_router(events.router, responses=PROBLEM_RESPONSES)
    # Limits are set per router so that they apply inside OversizeAsProblem.
    json_routers = (
        owners.router,
        projects.router,
        targets.router,
        regions.router,
        deployments.router,
        versions.router,
        starts.router,
        logs.router,
        aliases.router,
        webhooks.router,
    )
    for json_router in json_routers:
        app.include_router(
            json_router, max_body_size=settings.max_json_bytes, responses=PROBLEM_RESPONSES
        )
    app.include_router(
        blobs.router, max_body_size=settings.max_upload_bytes, responses=PROBLEM_RESPONSES
    )
    app.include_router(console.router, max_body_size=settings.max_json_bytes)
    app.mount("/console/static", console.static_files, name="console-static")
    app.add_middleware(console.ConsoleHeaders)
    return app
