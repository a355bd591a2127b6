"""What every request handler needs from the process: connections, stores, the publisher."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from dockyard_api.accounts import ApiToken, Owner, Project
from dockyard_api.settings import ApiSettings
from dockyard_common import (
    Alias,
    Counter,
    Deployment,
    EventPublisher,
    ResourceStore,
    Target,
    Version,
)

__all__ = ["ApiContext", "get_context"]


@dataclass(frozen=True)
class ApiContext:
    """Built once at start-up by the app's lifespan and shared by every request."""

    settings: ApiSettings
    nats: NatsClient
    js: JetStreamContext
    owners: ResourceStore[Owner]
    tokens: ResourceStore[ApiToken]
    projects: ResourceStore[Project]
    targets: ResourceStore[Target]
    deployments: ResourceStore[Deployment]
    versions: ResourceStore[Version]
    aliases: ResourceStore[Alias]
    sequences: Counter
    blobs: ObjectStore
    events: EventPublisher


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the process's :class:`ApiContext`."""
    context: ApiContext = request.app.state.context
    return context
