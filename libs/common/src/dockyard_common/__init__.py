"""Dockyard's shared contracts: what more than one service needs, and nothing else."""

from dockyard_common.consumers import ConsumerSpec, EventHandler, keep_alive, run_consumer
from dockyard_common.errors import DockyardError, InvalidInput, PermanentError, TransientError
from dockyard_common.events import EVENT_DATA, CloudEvent, EventType, UnknownEventType, event_data
from dockyard_common.jetstream import EventPublisher, connect_nats, provision_jetstream
from dockyard_common.lifecycle import run_jetstream_service, run_until_signalled
from dockyard_common.log import configure_logging, get_logger
from dockyard_common.models import (
    BlobDigest,
    CodeRef,
    Deployment,
    EndpointFile,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    LayerInfo,
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
from dockyard_common.redis_client import connect_redis
from dockyard_common.settings import CommonSettings
from dockyard_common.state import Conflict, Counter, ResourceStore, Stored

__all__ = [
    "EVENT_DATA",
    "AliasName",
    "BlobDigest",
    "CloudEvent",
    "CodeRef",
    "CommonSettings",
    "Conflict",
    "ConsumerSpec",
    "Counter",
    "Deployment",
    "DeploymentName",
    "DockyardError",
    "EndpointFile",
    "EndpointName",
    "EndpointSpec",
    "EndpointState",
    "EventHandler",
    "EventPublisher",
    "EventType",
    "ImageInfo",
    "InvalidInput",
    "InvalidName",
    "LayerInfo",
    "OwnerName",
    "PermanentError",
    "ProjectName",
    "ResourceStore",
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
    "configure_logging",
    "connect_nats",
    "connect_redis",
    "event_data",
    "get_logger",
    "keep_alive",
    "provision_jetstream",
    "run_consumer",
    "run_jetstream_service",
    "run_until_signalled",
    "utcnow",
]
