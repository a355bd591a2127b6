"""How fast the container target driver brings endpoints up, replaces a dead one, and stops.

Needs a Docker-compatible engine at ``DOCKER_HOST`` and Debian's busybox-static. Builds a
version with the real builder on a busybox base the engine holds (an embedded build: the
driver composes base and layers in the engine), then times on the driver itself:

- ``first_ready_s``: ensure → ready when the image must first be made in the engine;
- ``cached_ready_s``: the same image on another target (made already): start and probe only;
- ``replicas_ready_s``: ``--replicas`` replicas of one workload → all ready;
- ``restart_ready_s``: a replica killed → reported and ready again (backoff set to 0);
- ``remove_s``: stopping and removing the many-replica workload.

Prints readable lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness

from dockyard_builder.build import build_version
from dockyard_builder.settings import BuilderSettings
from dockyard_common import CodeRef, EndpointSpec, EndpointState, Target, TargetKind, Version
from dockyard_common.models import WorkloadState
from dockyard_scheduler.desired import Workload, desired_workloads
from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.containers import busybox_image, engine_or_skip


class Ready:
    """Waits for a workload's report with a given number of upstreams."""

    def __init__(self) -> None:
        self.states: dict[str, EndpointState] = {}
        self.changed = asyncio.Event()

    async def __call__(self, state: EndpointState) -> None:
        self.states[state.target] = state
        self.changed.set()

    async def wait(self, target: str, upstreams: int, but_not: list[str] | None = None) -> None:
        while True:
            state = self.states.get(target)
            if state is not None and state.state is WorkloadState.FAILED:
                raise RuntimeError(f"{target} failed: {state.reason}")
            if (
                state is not None
                and state.state is WorkloadState.READY
                and len(state.upstreams) == upstreams
                and state.upstreams != but_not
            ):
                return
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 60)


def workloads(root: Path, base: str, replicas: int) -> list[Workload]:
    code = root / "code"
    (code / "www").mkdir(parents=True)
    (code / "www" / "index.html").write_text("hello\n")
    spec = EndpointSpec.model_validate(
        {"name": "web", "server-command": "busybox httpd -f -p 8080 -h www", "port": 8080}
    )
    version = Version(
        owner="bench",
        project="containers",
        deployment="web",
        name=f"v{time.time_ns()}",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[spec],
        targets=["first", "cached", "many"],
    )
    image = build_version(version, code, BuilderSettings(data_dir=root, default_base_image=base))
    targets = {
        name: Target(name=name, region=name, kind=TargetKind.CONTAINER, address=f"127.0.4.{n}")
        for n, name in enumerate(version.targets, start=1)
    }
    found, _ = desired_workloads(version.model_copy(update={"image": image}), targets)
    many = found[2]
    endpoint = EndpointSpec.model_validate(
        {**many.endpoint.model_dump(by_alias=True), "replicas": {"min": replicas, "max": replicas}}
    )
    return [found[0], found[1], Workload(many.version, endpoint, many.target, many.manifest_digest)]


async def run(replicas: int) -> dict[str, float | int]:
    engine = engine_or_skip()
    base = busybox_image(engine)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        first, cached, many = workloads(root, base, replicas)
        ready = Ready()
        settings = SchedulerSettings(data_dir=root / "scheduler", restart_backoff_s=(0.0,))
        driver = ContainerDriver(settings, ready)
        figures: dict[str, float | int] = {"replicas": replicas}
        try:
            for name, workload, count in (
                ("first_ready_s", first, 1),
                ("cached_ready_s", cached, 1),
                ("replicas_ready_s", many, replicas),
            ):
                started = time.perf_counter()
                await driver.ensure(workload)
                await ready.wait(workload.target.name, count)
                figures[name] = round(time.perf_counter() - started, 3)
            before = ready.states["cached"].upstreams
            group = driver._groups[cached.key]
            started = time.perf_counter()
            container = group.replicas[0].container_id
            await asyncio.to_thread(engine.containers.get(container).kill)
            await ready.wait("cached", 1, but_not=before)
            figures["restart_ready_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            await driver.remove(many.key)
            figures["remove_s"] = round(time.perf_counter() - started, 3)
        finally:
            for key in driver.workload_keys():
                await driver.remove(key)
            await driver.close()
            engine.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=10)
    args = parser.parse_args()
    try:
        figures = asyncio.run(run(args.replicas))
    except pytest.skip.Exception as skipped:  # no engine, or no busybox: say so
        print(f"not run: {skipped.msg}")
        return
    lines = {
        "first replica ready (image made in the engine)": figures["first_ready_s"],
        "a replica of an image already made": figures["cached_ready_s"],
        f"{args.replicas} replicas of one workload, all ready": figures["replicas_ready_s"],
        "a killed replica reported and ready again": figures["restart_ready_s"],
        f"{args.replicas} replicas stopped and removed": figures["remove_s"],
    }
    for what, seconds in lines.items():
        print(f"{what:<52} {seconds} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
