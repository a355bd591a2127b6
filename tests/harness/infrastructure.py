"""One fixture API, two backends: local server binaries (default) or containers.

``DOCKYARD_TEST_BACKEND=local`` (the default) starts ``nats-server`` and ``redis-server`` from
what the project installs; ``containers`` runs the same servers in containers through
testcontainers, where a Docker-compatible engine answers. Either way the servers are real,
on loopback, on ports chosen at run time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard_platform.servers import start_nats, start_redis

__all__ = ["BACKEND_SETTING", "Infrastructure", "local_infrastructure", "start_infrastructure"]

BACKEND_SETTING = "DOCKYARD_TEST_BACKEND"


@dataclass(frozen=True)
class Infrastructure:
    """Where the test servers listen."""

    backend: str
    nats_url: str
    redis_url: str


@contextmanager
def local_infrastructure(data_dir: Path) -> Iterator[Infrastructure]:
    """NATS with JetStream and Redis as local processes under ``data_dir``."""
    nats = start_nats(data_dir / "nats-server")
    try:
        redis = start_redis(data_dir / "redis-server")
        try:
            yield Infrastructure("local", nats.url, redis.url)
        finally:
            redis.stop()
    finally:
        nats.stop()


@contextmanager
def start_infrastructure(data_dir: Path) -> Iterator[Infrastructure]:
    """The backend the setting names; raises ``BackendUnavailable`` with the reason if absent."""
    backend = os.environ.get(BACKEND_SETTING, "local")
    if backend == "local":
        with local_infrastructure(data_dir) as infrastructure:
            yield infrastructure
    elif backend == "containers":
        # Imported only when chosen: it needs the docker SDK and an engine.
        from tests.harness.containers import container_infrastructure

        with container_infrastructure() as infrastructure:
            yield infrastructure
    else:
        raise ValueError(f"{BACKEND_SETTING} must be 'local' or 'containers', not {backend!r}")
