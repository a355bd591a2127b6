"""The public surface of dockyard_common, pinned: a change here is a change of contract.

The face (``dockyard_common``) is the contracts and imports no NATS or Redis client; the
runtime pieces are ``dockyard_common.runtime``'s. Every name a service, the platform or a
benchmark takes from either is one the package exports.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import dockyard_common
import dockyard_common.runtime

REPO = Path(__file__).resolve().parents[3]

FACE = {
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
}

RUNTIME = {
    "Counter",
    "EventHandler",
    "EventPublisher",
    "Heartbeat",
    "ResourceStore",
    "cancellable",
    "connect_nats",
    "connect_redis",
    "keep_alive",
    "kv_write",
    "provision_jetstream",
    "run_consumer",
    "run_jetstream_service",
    "run_until_signalled",
    "watch_bucket",
}


def test_the_exported_names_are_exactly_the_pinned_ones() -> None:
    assert set(dockyard_common.__all__) == FACE
    assert set(dockyard_common.runtime.__all__) == RUNTIME


def test_every_exported_name_exists() -> None:
    for module in (dockyard_common, dockyard_common.runtime):
        assert [name for name in module.__all__ if not hasattr(module, name)] == []


def imported_names(package: str) -> dict[str, set[str]]:
    """Every name taken with ``from <package> import ...`` by the services, the platform,
    the CLI and the benchmarks, with the files that take it."""
    taken: dict[str, set[str]] = {}
    roots = [REPO / "services", REPO / "libs" / "platform", REPO / "libs" / "cli", REPO / "bench"]
    for path in (p for root in roots for p in root.rglob("*.py") if ".venv" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == package:
                for alias in node.names:
                    taken.setdefault(alias.name, set()).add(str(path.relative_to(REPO)))
    return taken


def test_what_the_services_import_is_what_the_package_exports() -> None:
    for package, exported in (("dockyard_common", FACE), ("dockyard_common.runtime", RUNTIME)):
        taken = imported_names(package)
        assert taken, f"nothing imports {package}: the scan is broken"
        unexported = {
            name: sorted(files)
            for name, files in taken.items()
            if name not in exported and importlib.util.find_spec(f"{package}.{name}") is None
        }
        assert unexported == {}, f"taken from {package} without being exported: {unexported}"


def test_the_face_imports_no_nats_or_redis_client() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dockyard_common, dockyard_common.subscriptions, "
            "dockyard_common.catalogue; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'redis') "
            "or m.startswith('dockyard_common.runtime')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"
