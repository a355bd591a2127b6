"""The public surface of dockyard_common, pinned: a change here is a change of contract."""

from __future__ import annotations

import dockyard_common

EXPECTED = {
    "EVENT_DATA",
    "Alias",
    "AliasChange",
    "AliasTarget",
    "Record",
    "Replicas",
    "ProcessHeartbeat",
    "RouterHeartbeat",
    "ServiceRestart",
    "AliasName",
    "BlobDigest",
    "BuildProgress",
    "BuildSpec",
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
    "Heartbeat",
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
    "Written",
    "cancellable",
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
}


def test_the_exported_names_are_exactly_the_pinned_ones() -> None:
    assert set(dockyard_common.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    missing = [name for name in dockyard_common.__all__ if not hasattr(dockyard_common, name)]
    assert missing == []
