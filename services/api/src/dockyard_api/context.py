"""What every request handler needs from the process: connections, stores, the publisher."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from fastapi import Request
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from dockyard_api.accounts import ApiToken, Owner, Project
from dockyard_api.applied import AppliedWatch
from dockyard_api.sessions import SessionStore
from dockyard_api.settings import ApiSettings
from dockyard_api.webhooks.models import Webhook
from dockyard_common import Alias, Deployment, Target, Version
from dockyard_common.platform_facts import Region
from dockyard_common.runtime import Counter, EventPublisher, ResourceStore

__all__ = ["ApiContext", "CheckedCode", "RefusedBlobs", "get_context"]


class CheckedCode:
    """Code blobs that passed the archive checks, with their ``valohai.yaml`` (bounded LRU)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, str | None] = OrderedDict()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> str | None:
        """The ``valohai.yaml`` of a checked blob (None when it has none)."""
        self._entries.move_to_end(name)
        return self._entries[name]

    def put(self, name: str, valohai_yaml: str | None) -> None:
        """Remember a blob that passed."""
        self._entries[name] = valohai_yaml
        self._entries.move_to_end(name)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class RefusedBlobs:
    """Digests of archives refused as hostile (a compression bomb, say), with the reason:
    a resubmission, or a new upload of the same bytes, is refused at once (bounded LRU).

    Kept by digest alone, for every project: the same bytes are as hostile anywhere.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, str] = OrderedDict()

    def reason(self, digest: str) -> str | None:
        """Why ``digest`` (``sha256:<hex>``) was refused; None if it was not."""
        reason = self._entries.get(digest)
        if reason is not None:
            self._entries.move_to_end(digest)
        return reason

    def refuse(self, digest: str, reason: str) -> None:
        """Remember that ``digest`` was refused, and why."""
        self._entries[digest] = reason
        self._entries.move_to_end(digest)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


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
    routers: AppliedWatch
    """The router processes, applying alias writes."""
    dispatchers: AppliedWatch
    """The webhook dispatchers, applying subscription writes."""
    webhooks: ResourceStore[Webhook]
    regions: ResourceStore[Region]
    console_sessions: SessionStore
    """The web console's sign-ins."""
    checked_code: CheckedCode = field(default_factory=CheckedCode)
    refused_blobs: RefusedBlobs = field(default_factory=RefusedBlobs)


async def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the process's :class:`ApiContext` (``async``: FastAPI runs a plain
    ``def`` dependency on a worker thread, a thread handoff on every request)."""
    context: ApiContext = request.app.state.context
    return context
