"""The container driver reads each replica's last lines from its container on a real engine
(podman's Docker API), as the logs route asks for them. Skipped, with the reason printed, where
no engine answers at ``DOCKER_HOST``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.drivers.container.engine import LABEL_KEY
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.containers import busybox_image, engine_or_skip
from tests.test_container_target import Reports, _workload

SAYS = [f"says {n}" for n in range(1, 6)]
COMMAND = (
    'for n in 1 2 3 4 5; do echo "says $n"; done; echo "to stderr" >&2; '
    "exec busybox httpd -f -p $PORT -h /app/www"
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = engine_or_skip()
    yield client
    client.close()


@pytest.mark.docker
async def test_each_replica_s_last_lines_come_from_its_own_container(
    tmp_path: Path, engine: Any
) -> None:
    base = busybox_image(engine)
    # A long backoff: a replica whose container goes stays without one while the test looks.
    settings = SchedulerSettings(
        data_dir=tmp_path / "scheduler", readiness_timeout_s=5.0, restart_backoff_s=(60.0,)
    )
    reports = Reports()
    driver = ContainerDriver(settings, reports)
    workload = _workload(tmp_path, base, COMMAND, replicas=2)
    try:
        await driver.ensure(workload)
        await reports.wait_for("ready with two upstreams", lambda s: len(s.upstreams) == 2)

        logs = await driver.logs(workload.key, tail=10)
        assert [entry.replica for entry in logs] == [0, 1]
        containers = {c.id[:12] for c in engine.containers.list(filters={"label": LABEL_KEY})}
        for entry in logs:
            assert entry.error is None, entry.error
            assert entry.name in containers, f"{entry.name} is not a running container"
            assert [line for line in entry.lines if line.startswith("says")] == SAYS
            assert "to stderr" in entry.lines, "stderr is missing from the logs"
        assert logs[0].name != logs[1].name, "two replicas read the same container"
        for entry in await driver.logs(workload.key, tail=2):
            assert len(entry.lines) == 2 and "says 5" in entry.lines, entry.lines
        assert await driver.logs("acme.demo.other.v1/web/box", tail=5) == []

        # A replica whose container is gone says so; the other still gives its lines.
        await asyncio.to_thread(engine.containers.get(logs[0].name).remove, force=True)
        gone, kept = await driver.logs(workload.key, tail=10)
        assert gone.lines == [] and gone.error, gone
        assert kept.error is None and "says 5" in kept.lines
    finally:
        await driver.remove(workload.key)
        await driver.close()
