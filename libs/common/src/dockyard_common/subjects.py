"""Names of everything that crosses a process boundary: subjects, streams, buckets, keys.

One place decides them so that a publisher and a subscriber can never disagree.
Pure functions, no I/O.
"""

from __future__ import annotations

__all__ = [
    "ALIASES_BUCKET",
    "AUTOSCALE_WAKE_SUBJECT",
    "BLOB_BUCKET",
    "DEPLOYMENTS_BUCKET",
    "EVENTS_STREAM",
    "EVENT_SUBJECT_PREFIX",
    "KV_BUCKETS",
    "LOGS_SUBJECT_PREFIX",
    "OWNERS_BUCKET",
    "PLATFORM_EVENT_PREFIX",
    "PLATFORM_SUBJECT_PREFIX",
    "PROJECTS_BUCKET",
    "REGIONS_BUCKET",
    "REPORT_EVENT_PREFIXES",
    "REPORT_SUBJECT_PREFIX",
    "ROUTER_HEARTBEAT_SUBJECT",
    "SEQUENCES_BUCKET",
    "TARGETS_BUCKET",
    "TOKENS_BUCKET",
    "TRAFFIC_EVENT_TYPE",
    "TRAFFIC_STREAM",
    "TRAFFIC_SUBJECT_PREFIX",
    "VERSIONS_BUCKET",
    "WEBHOOKS_BUCKET",
    "WEBHOOK_DELIVERIES_STREAM",
    "WEBHOOK_DELIVERY_PREFIX",
    "WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT",
    "WEBHOOK_LOG_PREFIX",
    "WEBHOOK_LOG_STREAM",
    "alias_key",
    "alias_table_key",
    "blob_object_name",
    "deployment_key",
    "event_subject",
    "event_type_filter",
    "is_platform_event",
    "is_report",
    "logs_subject",
    "message_id",
    "platform_event_subject",
    "project_key",
    "region_key",
    "report_subject",
    "route_key",
    "traffic_subject",
    "version_key",
    "version_sequence_key",
    "webhook_key",
    "webhook_lane_subject",
    "webhook_log_subject",
]

EVENTS_STREAM = "DOCKYARD_EVENTS"
ROUTER_HEARTBEAT_SUBJECT = "dockyard.routers.heartbeat"
"""Core NATS (no stream): each router process says it is alive and what it has applied."""
WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT = "dockyard.webhooks.heartbeat"
"""Core NATS: each webhook dispatcher says it is alive and how far it has applied the
subscriptions."""
EVENT_SUBJECT_PREFIX = "dockyard.events"
PLATFORM_EVENT_PREFIX = "platform."
"""Event types about the platform itself (``platform.service.restarted``): no owner's scope."""
PLATFORM_SUBJECT_PREFIX = "dockyard.platform"
"""Where platform events go, in the events stream: ``dockyard.platform.service.restarted``."""
REPORT_EVENT_PREFIXES = ("builder.", "scheduler.")
"""Event types that are a service's report (``builder.build.succeeded``,
``scheduler.endpoint.observed``): what it did or saw, for the API to fold into the state of
record. Only the API acts on them; everyone else acts on the facts it then announces."""
REPORT_SUBJECT_PREFIX = "dockyard.reports"
"""Where reports go, in the events stream: apart from the facts, so that a subscriber of
``dockyard.events.>`` (webhooks, the event feed) sees facts only."""
TRAFFIC_STREAM = "DOCKYARD_TRAFFIC"
TRAFFIC_SUBJECT_PREFIX = "dockyard.traffic"
TRAFFIC_EVENT_TYPE = "router.traffic.observed"
"""The request metrics feed (:mod:`dockyard_common.traffic`): its own stream, a day kept,
under ``dockyard.traffic.<owner>.<project>.<deployment>``."""
AUTOSCALE_WAKE_SUBJECT = "dockyard.autoscale.wake"
"""Core NATS request/reply: a router asks the scheduler to start a replica of an endpoint
scaled to zero (:class:`dockyard_common.traffic.WakeRequest`)."""
LOGS_SUBJECT_PREFIX = "dockyard.logs"
"""Core NATS request/reply: the scheduler running a target answers for its endpoints' logs."""

OWNERS_BUCKET = "dockyard_owners"
TOKENS_BUCKET = "dockyard_tokens"
PROJECTS_BUCKET = "dockyard_projects"
TARGETS_BUCKET = "dockyard_targets"
DEPLOYMENTS_BUCKET = "dockyard_deployments"
VERSIONS_BUCKET = "dockyard_versions"
ALIASES_BUCKET = "dockyard_aliases"
SEQUENCES_BUCKET = "dockyard_sequences"
WEBHOOKS_BUCKET = "dockyard_webhooks"
REGIONS_BUCKET = "dockyard_regions"
KV_BUCKETS = (
    OWNERS_BUCKET,
    TOKENS_BUCKET,
    PROJECTS_BUCKET,
    TARGETS_BUCKET,
    DEPLOYMENTS_BUCKET,
    VERSIONS_BUCKET,
    ALIASES_BUCKET,
    SEQUENCES_BUCKET,
    WEBHOOKS_BUCKET,
    REGIONS_BUCKET,
)
BLOB_BUCKET = "dockyard_blobs"

WEBHOOK_DELIVERIES_STREAM = "DOCKYARD_WEBHOOK_DELIVERIES"
"""Work queue of webhook deliveries, one subject (lane) per subscription and deployment."""
WEBHOOK_DELIVERY_PREFIX = "dockyard.webhooks.deliveries"
WEBHOOK_LOG_STREAM = "DOCKYARD_WEBHOOK_LOG"
"""Every delivery attempt's outcome, one subject per subscription, bounded per subject."""
WEBHOOK_LOG_PREFIX = "dockyard.webhooks.log"


def event_subject(owner: str, project: str, deployment: str, event_type: str) -> str:
    """``dockyard.events.<owner>.<project>.<deployment>.<type>`` (the type keeps its dots)."""
    return f"{EVENT_SUBJECT_PREFIX}.{owner}.{project}.{deployment}.{event_type}"


def is_platform_event(event_type: str) -> bool:
    """Whether ``event_type`` speaks of the platform itself rather than a deployment."""
    return event_type.startswith(PLATFORM_EVENT_PREFIX)


def platform_event_subject(event_type: str) -> str:
    """``dockyard.platform.<rest of the type>`` for a ``platform.<rest>`` event type."""
    if not is_platform_event(event_type):
        raise ValueError(f"{event_type!r} is not a platform event type")
    return f"{PLATFORM_SUBJECT_PREFIX}.{event_type.removeprefix(PLATFORM_EVENT_PREFIX)}"


def traffic_subject(owner: str, project: str, deployment: str) -> str:
    """Where the routers' request metrics of a deployment go."""
    return f"{TRAFFIC_SUBJECT_PREFIX}.{owner}.{project}.{deployment}"


def is_report(event_type: str) -> bool:
    """Whether ``event_type`` is a service's report rather than a fact of the record."""
    return event_type.startswith(REPORT_EVENT_PREFIXES)


def report_subject(owner: str, project: str, deployment: str, event_type: str) -> str:
    """``dockyard.reports.<owner>.<project>.<deployment>.<type>`` for a report type."""
    if not is_report(event_type):
        raise ValueError(f"{event_type!r} is not a report type")
    return f"{REPORT_SUBJECT_PREFIX}.{owner}.{project}.{deployment}.{event_type}"


def event_type_filter(event_type: str) -> str:
    """A subject filter matching ``event_type`` (which may end in ``>``) for every deployment:
    under the reports' prefix for a report type, else under the facts'."""
    prefix = REPORT_SUBJECT_PREFIX if is_report(event_type) else EVENT_SUBJECT_PREFIX
    return f"{prefix}.*.*.*.{event_type}"


def logs_subject(target: str) -> str:
    """Where the API asks for the recent log lines of endpoints on ``target``."""
    return f"{LOGS_SUBJECT_PREFIX}.{target}"


def project_key(owner: str, project: str) -> str:
    """KV key of a project in :data:`PROJECTS_BUCKET`."""
    return f"{owner}.{project}"


def alias_table_key(owner: str, project: str, deployment: str, alias: str) -> str:
    """How routers name an alias in their tables and heartbeats: ``o/p/d/alias``."""
    return f"{owner}/{project}/{deployment}/{alias}"


def region_key(region: str) -> str:
    """KV key of a region's operator state (drained or not) in :data:`REGIONS_BUCKET`."""
    return region


def alias_key(owner: str, project: str, deployment: str, alias: str) -> str:
    """KV key of an alias in :data:`ALIASES_BUCKET`."""
    return f"{owner}.{project}.{deployment}.{alias}"


def deployment_key(owner: str, project: str, deployment: str) -> str:
    """KV key of a deployment in :data:`DEPLOYMENTS_BUCKET`."""
    return f"{owner}.{project}.{deployment}"


def version_key(owner: str, project: str, deployment: str, version: str) -> str:
    """KV key of a version in :data:`VERSIONS_BUCKET` (a version name may hold dots)."""
    return f"{owner}.{project}.{deployment}.{version}"


def version_sequence_key(owner: str, project: str, deployment: str, day: str) -> str:
    """KV key of the counter behind default version names ``<day>.<n>``."""
    return f"{owner}.{project}.{deployment}.{day}"


def route_key(owner: str, project: str, deployment: str, version: str, endpoint: str) -> str:
    """The router's table key of one endpoint of one version."""
    return f"{owner}/{project}/{deployment}/{version}/{endpoint}"


def blob_object_name(owner: str, project: str, digest: str) -> str:
    """Object-store name of a project's blob; blobs are scoped per project for authorisation."""
    return f"{owner}/{project}/{digest}"


def message_id(event_type: str, resource_key: str, revision: int | str) -> str:
    """The ``Nats-Msg-Id`` (and CloudEvent ``id``) of an event about a resource revision.

    The same change published twice yields the same id, so JetStream drops the copy.
    """
    return f"{event_type}:{resource_key}:{revision}"


def webhook_key(owner: str, project: str, webhook_id: str) -> str:
    """KV key of a webhook subscription in :data:`WEBHOOKS_BUCKET`."""
    return f"{owner}.{project}.{webhook_id}"


def webhook_lane_subject(owner: str, project: str, webhook_id: str, deployment: str) -> str:
    """The delivery lane of one subscription and deployment: delivered in order, one at a time."""
    return f"{WEBHOOK_DELIVERY_PREFIX}.{owner}.{project}.{webhook_id}.{deployment}"


def webhook_log_subject(owner: str, project: str, webhook_id: str) -> str:
    """Where the delivery attempts of one subscription are logged."""
    return f"{WEBHOOK_LOG_PREFIX}.{owner}.{project}.{webhook_id}"
