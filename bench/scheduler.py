"""Benchmark of the scheduler's Kubernetes driver (issue 5): converge, idle pass, memory.

One run: a nats-server with JetStream on a free port, two Kubernetes API server contract
stubs (tests/harness/kube_stub.py, one per target, each marking a rollout available at
once) in a thread of this process, and ONE scheduler process (``python -m
dockyard_scheduler``) reading a kubeconfig with one context per stub.

1. **Converge.** ``--deployments`` built versions (one tiny wsgi endpoint each, on both
   targets) are written to the versions KV bucket (the ``Record`` envelope the API writes)
   and announced by ``version.built`` events, as the builder does. ``converge_s`` runs from
   the first ``version.built`` publish to the last ``endpoint.ready`` of deployments x
   targets workloads.
2. **Idle pass.** With everything converged, the scheduler's next periodic full pass
   (``reconcile.pass.done`` in its JSON log) has nothing to change: ``idle_pass_s`` is its
   duration, and the API calls the stubs saw during it are counted (the goal is none).
3. **Memory.** ``peak_rss_mb`` is the scheduler's VmHWM from ``/proc``.

A benchmark measures: it never fails because a target is missed.
Run: ``.venv/bin/python bench/scheduler.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from dockyard_common import (
    CodeRef,
    EndpointSpec,
    EventType,
    ImageInfo,
    Target,
    TargetKind,
    Version,
    VersionStatus,
)
from dockyard_common.runtime import EventPublisher, ResourceStore, provision_jetstream
from dockyard_common.runtime.processes import stop_with_parent
from dockyard_common.subjects import TARGETS_BUCKET, VERSIONS_BUCKET, version_key
from dockyard_platform.servers import start_nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness.kube_stub import KubeStub, StubThread, write_kubeconfig

TARGET_CONVERGE_S = 60.0
TARGET_IDLE_PASS_S = 5.0
TARGET_RSS_MB = 300.0

OWNER = "bench"
PROJECT = "sched"
TARGETS = ("k8s-a", "k8s-b")
DIGEST = "sha256:" + "1" * 64
MANIFEST = "sha256:" + "2" * 64


def version_of(index: int) -> Version:
    """A built version of deployment ``d<index>`` with one tiny wsgi endpoint on both targets."""
    return Version(
        owner=OWNER,
        project=PROJECT,
        deployment=f"d{index}",
        name="v1",
        status=VersionStatus.BUILT,
        code=CodeRef(blob=DIGEST),
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
        targets=list(TARGETS),
        image=ImageInfo(
            reference=f"registry.bench.test/{OWNER}/{PROJECT}-d{index}:v1",
            digest=DIGEST,
            endpoints={"predict": MANIFEST},
            layers=[],
        ),
    )


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM) in MB; 0.0 where /proc has none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class SchedulerLog:
    """The scheduler's JSON log lines, read as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.lines: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        new = []
        for raw in complete.splitlines():
            try:
                new.append(json.loads(raw))
            except ValueError:
                continue
        self.lines += new
        return new

    async def wait_for(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.read():
                if line.get("event") == event:
                    return line
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no {event} in the scheduler log within {timeout_s} s")


def start_scheduler(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m dockyard_scheduler`` with ``env``, its output into ``log_path``."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "dockyard_scheduler"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=stop_with_parent,
        )


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    nats_server = start_nats(work)
    stubs = StubThread([KubeStub(rollouts="available") for _ in TARGETS])
    stubs.start()
    kubeconfig = write_kubeconfig(
        work / "kubeconfig",
        {name: stub.url for name, stub in zip(TARGETS, stubs.stubs, strict=True)},
    )
    nc = await nats.connect(nats_server.url, name="bench-scheduler")
    js = nc.jetstream()
    await provision_jetstream(js)
    targets = await ResourceStore.open(js, TARGETS_BUCKET, Target)
    for name in TARGETS:
        await targets.create(
            name, Target(name=name, region=name, kind=TargetKind.KUBERNETES, context=name)
        )
    ready: set[str] = set()
    all_ready = asyncio.Event()
    expected = args.deployments * len(TARGETS)
    last_ready = [0.0]

    async def on_ready(message: Msg) -> None:
        data = json.loads(message.data)["data"]
        ready.add(f"{data['deployment']}/{data['target']}")
        last_ready[0] = time.perf_counter()
        if len(ready) >= expected:
            all_ready.set()

    await nc.subscribe(
        f"dockyard.events.{OWNER}.{PROJECT}.*.{EventType.ENDPOINT_READY}", cb=on_ready
    )
    log_path = work / "scheduler.log"
    env = {
        **os.environ,
        "DOCKYARD_NATS_URL": nats_server.url,
        "DOCKYARD_DATA_DIR": str(work / "data"),
        "DOCKYARD_KUBECONFIG": str(kubeconfig),
        "DOCKYARD_LOG_FORMAT": "json",
        "DOCKYARD_FULL_PASS_EVERY_S": str(args.pass_every),
    }
    scheduler = start_scheduler(env, log_path)
    log = SchedulerLog(log_path)
    try:
        await log.wait_for("reconcile.pass.done", 60)  # started, first (empty) pass done
        versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
        built = [version_of(i) for i in range(args.deployments)]
        events = EventPublisher(js, source="bench/builder")
        started = time.perf_counter()
        for version in built:
            key = version_key(OWNER, PROJECT, version.deployment, version.name)
            revision = await versions.create(key, version)
            await events.publish(
                EventType.VERSION_BUILT,
                version,
                resource_key=key,
                revision=revision,
            )
        published_s = time.perf_counter() - started
        try:
            await asyncio.wait_for(all_ready.wait(), args.timeout)
            converge_s: float | None = last_ready[0] - started
        except TimeoutError:
            converge_s = None
        calls_before = [stub.requests.copy() for stub in stubs.stubs]
        log.read()
        idle = await log.wait_for("reconcile.pass.done", args.pass_every + 120)
        calls = sum(
            sum((stub.requests - before).values())
            for stub, before in zip(stubs.stubs, calls_before, strict=True)
        )
        return {
            "deployments": args.deployments,
            "targets": len(TARGETS),
            "workloads_ready": len(ready),
            "publish_s": round(published_s, 2),
            "converge_s": None if converge_s is None else round(converge_s, 2),
            "idle_pass_s": idle.get("seconds"),
            "idle_pass_workloads": idle.get("workloads"),
            "idle_pass_api_calls": calls,
            "peak_rss_mb": round(peak_rss_mb(scheduler.pid), 1),
            "api_writes": sum(stub.writes() for stub in stubs.stubs),
        }
    finally:
        scheduler.terminate()
        try:
            scheduler.wait(15)
        except subprocess.TimeoutExpired:
            scheduler.kill()
        await nc.close()
        stubs.stop()
        nats_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--pass-every", type=float, default=15.0, help="full pass period, s")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up converging, s")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    try:
        result = asyncio.run(run(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    print(
        f"{result['deployments']} deployments x {result['targets']} targets "
        f"({result['workloads_ready']} workloads ready, {result['api_writes']} API writes)"
    )
    print(
        f"converge: {result['converge_s']} s (target <= {TARGET_CONVERGE_S:g} s; "
        f"publishing took {result['publish_s']} s)"
    )
    print(
        f"idle full pass: {result['idle_pass_s']} s over {result['idle_pass_workloads']} "
        f"workloads, {result['idle_pass_api_calls']} API calls "
        f"(target <= {TARGET_IDLE_PASS_S:g} s)"
    )
    print(f"scheduler peak RSS: {result['peak_rss_mb']} MB (target <= {TARGET_RSS_MB:g} MB)")
    result["targets_met"] = {
        "converge": result["converge_s"] is not None and result["converge_s"] <= TARGET_CONVERGE_S,
        "idle_pass": (result["idle_pass_s"] or 1e9) <= TARGET_IDLE_PASS_S,
        "rss": result["peak_rss_mb"] <= TARGET_RSS_MB,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
