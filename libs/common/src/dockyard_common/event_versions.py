"""The schema version of every event type, and where a subscriber reads which one it got.

Each event carries ``dataschema`` (a CloudEvents attribute):
``urn:dockyard:event-schema:<type>:v<version>``. A version changes whenever the shape of the
type's ``data`` changes; ``libs/common/tests/event_schemas.lock.json`` pins the shape of each
version and a test fails when a shape changes under an old version. Pure data, no I/O.
"""

from __future__ import annotations

__all__ = [
    "DATASCHEMA_PREFIX",
    "EVENT_SCHEMA_VERSIONS",
    "EVENT_SUMMARIES",
    "dataschema_uri",
    "producer",
    "schema_version",
]

DATASCHEMA_PREFIX = "urn:dockyard:event-schema:"

# A version's 2: it carries ``started_at``, when it was last started again after a stop;
# 3: its ``warnings``, its image's per-endpoint bases, its endpoints' runtime ``notes``.
# An endpoint state's 2: its ``notes``.
EVENT_SCHEMA_VERSIONS: dict[str, int] = {
    "version.created": 3,
    "version.stopping": 3,
    "version.stopped": 3,
    "version.starting": 2,
    "version.build.started": 3,
    "version.build.progress": 1,
    "version.built": 3,
    "version.build.failed": 3,
    "version.ready": 3,
    "version.degraded": 3,
    "endpoint.deploying": 2,
    "endpoint.ready": 2,
    "endpoint.failed": 2,
    "endpoint.scaled": 2,
    "endpoint.stopped": 2,
    "deployment.changed": 1,
    "platform.service.restarted": 1,
    "platform.region.drained": 1,
    "platform.region.undrained": 1,
    "builder.build.started": 1,
    "builder.build.succeeded": 1,
    "builder.build.failed": 1,
    "scheduler.endpoint.observed": 1,
    "scheduler.version.removed": 1,
    "router.traffic.observed": 1,
    "alias.changed": 2,  # 2: a history entry's action is 'set' or 'rollback', not any string
}
"""Bump a type's number when its data changes shape (a type not listed is at version 1)."""

EVENT_SUMMARIES: dict[str, str] = {
    "version.created": "A version was submitted; the builder will build it.",
    "version.stopping": "A version is being stopped (its endpoints are being removed).",
    "version.stopped": "A version is stopped: none of its endpoints run any more.",
    "version.starting": "A stopped version is started again from its image (`started_at`).",
    "version.build.started": "The builder started building the version's image.",
    "version.build.progress": "Bytes done of bytes to do, per build phase (layers, push).",
    "version.built": "The version's image is built; `image` holds its digest.",
    "version.build.failed": "The build failed; `error` says why.",
    "version.ready": "Every endpoint of the version serves on every one of its targets.",
    "version.degraded": "A ready version is no longer: an endpoint failed or lost its replicas.",
    "endpoint.deploying": "An endpoint of a version is being started on a target.",
    "endpoint.ready": "An endpoint of a version serves on a target; `upstreams` are its replicas.",
    "endpoint.failed": "An endpoint of a version failed on a target; `reason` says why.",
    "endpoint.scaled": "A ready endpoint's replica count changed; `upstreams` lists them.",
    "endpoint.stopped": "An endpoint of a version was stopped on a target.",
    "deployment.changed": "A deployment was created or its targets changed.",
    "alias.changed": "An alias now points at another version (or split between two).",
    "platform.service.restarted": (
        "A platform process (api, builder, scheduler, router, webhooks, nats, redis) ended on "
        "its own and was started again; `exit_code` or `signal` says how it ended."
    ),
    "platform.region.drained": "An operator drained a region: routers send it no requests "
    "while another region can serve them.",
    "platform.region.undrained": "An operator undrained a region: it serves again.",
    "builder.build.started": "Report: the builder took the version up (the API then "
    "announces `version.build.started`).",
    "builder.build.succeeded": "Report: the version's image is built; `image` holds its "
    "digest (the API then announces `version.built`).",
    "builder.build.failed": "Report: the build failed for good; `error` says why (the API "
    "then announces `version.build.failed`).",
    "scheduler.endpoint.observed": "Report: what an endpoint of a version does on a target "
    "now (the API then announces the `endpoint.*` fact it makes, if any).",
    "scheduler.version.removed": "Report: every workload of a stopping version is gone "
    "(the API then announces `version.stopped`).",
    "router.traffic.observed": "What one router process served of a deployment over one "
    "second, per version, endpoint and region: requests, errors, in flight, latency "
    "histogram. Its own stream (`DOCKYARD_TRAFFIC`, a day kept), under "
    "`dockyard.traffic.<owner>.<project>.<deployment>`.",
}
"""One line per type for the catalogue (docs/events.md and the AsyncAPI document)."""


def schema_version(event_type: str) -> int:
    """The current schema version of ``event_type``'s data."""
    return EVENT_SCHEMA_VERSIONS.get(event_type, 1)


def dataschema_uri(event_type: str) -> str:
    """The ``dataschema`` attribute of ``event_type``'s events at the current version."""
    return f"{DATASCHEMA_PREFIX}{event_type}:v{schema_version(event_type)}"


def producer(event_type: str) -> str:
    """Who publishes ``event_type``: the API announces every fact with the write of the state
    of record it speaks of; services publish only their reports (and the builder its live
    progress); the embedded platform's supervisor its restarts."""
    if event_type == "version.build.progress":
        return "builder"
    if event_type.startswith(("builder.", "scheduler.")):
        return event_type.partition(".")[0]
    if event_type == "platform.service.restarted":
        return "supervisor (dockyard up)"
    if event_type == "router.traffic.observed":
        return "router (every process, every second)"
    return "api"
