"""Dockyard's shared contracts: what more than one service needs, and nothing else.

This face is the contracts (names, models, events, subjects, errors, the consumer specs),
pure to import: no NATS or Redis client comes with it. The runtime pieces (connections,
the state of record's stores, publishing and consuming events) are in
:mod:`dockyard_common.runtime`.
"""

from dockyard_common.errors import (
    Conflict,
    DockyardError,
    InvalidInput,
    PermanentError,
    TransientError,
)
from dockyard_common.events import EVENT_DATA, CloudEvent, EventType, UnknownEventType, event_data
from dockyard_common.log import configure_logging, get_logger
from dockyard_common.models import (
    Alias,
    AliasChange,
    AliasTarget,
    BlobDigest,
    BuildProgress,
    BuildSpec,
    CodeRef,
    Deployment,
    EndpointFile,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    LayerInfo,
    ProcessHeartbeat,
    Replicas,
    RouterHeartbeat,
    Target,
    TargetKind,
    Version,
    VersionStatus,
    WorkloadState,
    utcnow,
)
from dockyard_common.names import (
    AliasName,
    DeploymentName,
    EndpointName,
    InvalidName,
    OwnerName,
    ProjectName,
    TargetName,
    VersionName,
)
from dockyard_common.platform_facts import Region, ServiceRestart
from dockyard_common.records import Announcement, Record, Stored, Written
from dockyard_common.settings import CommonSettings
from dockyard_common.subscriptions import ConsumerSpec

__all__ = [
    "EVENT_DATA",
    "Alias",
    "AliasChange",
    "AliasName",
    "AliasTarget",
    "Announcement",
    "BlobDigest",
    "BuildProgress",
    "BuildSpec",
    "CloudEvent",
    "CodeRef",
    "CommonSettings",
    "Conflict",
    "ConsumerSpec",
    "Deployment",
    "DeploymentName",
    "DockyardError",
    "EndpointFile",
    "EndpointName",
    "EndpointSpec",
    "EndpointState",
    "EventType",
    "ImageInfo",
    "InvalidInput",
    "InvalidName",
    "LayerInfo",
    "OwnerName",
    "PermanentError",
    "ProcessHeartbeat",
    "ProjectName",
    "Record",
    "Region",
    "Replicas",
    "RouterHeartbeat",
    "ServiceRestart",
    "Stored",
    "Target",
    "TargetKind",
    "TargetName",
    "TransientError",
    "UnknownEventType",
    "Version",
    "VersionName",
    "VersionStatus",
    "WorkloadState",
    "Written",
    "configure_logging",
    "event_data",
    "get_logger",
    "utcnow",
]
