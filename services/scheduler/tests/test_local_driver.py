"""The local driver with real processes: replicas, crashes, adoption by a later scheduler."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard_common import (
    CodeRef,
    DockyardError,
    EndpointSpec,
    EndpointState,
    ImageInfo,
    PermanentError,
    Replicas,
    Target,
    Version,
    WorkloadState,
)
from dockyard_common.oci_layout import OciLayout, canonical_json, descriptor
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers.local import LocalDriver
from dockyard_scheduler.drivers.local.images import unpack_image
from dockyard_scheduler.drivers.local.replicas import ReplicaRecord, process_start_ticks
from dockyard_scheduler.settings import SchedulerSettings

SERVER = b"""\
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"pid={os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

print(f"listening pid={os.getpid()}", flush=True)
http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def tiny_image(layout_dir: Path, command: list[str], server: bytes = SERVER) -> tuple[str, str]:
    """An OCI layout holding one image: ``server.py`` in /app, run by ``command``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("app/server.py")
        info.size = len(server)
        tar.addfile(info, io.BytesIO(server))
    layout = OciLayout(layout_dir)
    layout.ensure()
    layer_bytes = layer.getvalue()
    layout.add_blob(layer_bytes)
    config = canonical_json({"config": {"Cmd": command, "WorkingDir": "/app", "Env": []}})
    layout.add_blob(config)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer_bytes)],
        }
    )
    return f"oci:{layout_dir}:v1", layout.add_blob(manifest)


def a_workload(
    tmp_path: Path,
    replicas: int,
    command: list[str] | None = None,
    server: bytes = SERVER,
    name: str = "v1",
    resources: dict[str, Any] | None = None,
    max_replicas: int | None = None,
) -> Workload:
    reference, manifest = tiny_image(
        tmp_path / "layout", command or ["python3", "server.py"], server
    )
    digest = "sha256:" + "0" * 64
    version = Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        code=CodeRef(blob=digest),
        targets=["local-eu"],
        endpoints=[
            EndpointSpec(
                name="predict",
                wsgi="app:app",
                replicas=Replicas(min=replicas, max=max_replicas or replicas),
                resources=resources or {},
            )
        ],
        image=ImageInfo(reference=reference, digest=digest, layers=[], endpoints={}),
    )
    target = Target(name="local-eu", region="eu", address="127.0.0.1")
    return Workload(version, version.endpoints[0], target, manifest)


class Reports:
    """What a driver reported, and a way to wait for a report."""

    def __init__(self) -> None:
        self.seen: list[EndpointState] = []
        self._changed = asyncio.Event()

    async def __call__(self, state: EndpointState) -> None:
        self.seen.append(state)
        self._changed.set()

    async def wait_for(
        self, what: str, check: Callable[[EndpointState], bool], within_s: float = 15.0
    ) -> EndpointState:
        deadline = time.monotonic() + within_s
        while True:
            for state in reversed(self.seen):
                if check(state):
                    return state
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no report of {what}; seen: {self.seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


def ready_with(count: int) -> Callable[[EndpointState], bool]:
    return lambda s: s.state is WorkloadState.READY and len(s.upstreams) == count


@pytest.fixture
def settings(tmp_path: Path) -> SchedulerSettings:
    return SchedulerSettings(
        data_dir=tmp_path / "data",
        readiness_timeout_s=10.0,
        restart_backoff_s=(0.1,),
        stop_grace_s=2.0,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def get(http: httpx.AsyncClient, upstream: str) -> httpx.Response:
    """GET / of a replica as the router reaches it: over TCP, or its Unix socket."""
    if not upstream.startswith("unix:"):
        return await http.get(upstream)
    transport = httpx.AsyncHTTPTransport(uds=upstream.removeprefix("unix:"))
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as over_socket:
        return await over_socket.get("http://localhost/")


async def pids_behind(http: httpx.AsyncClient, upstreams: list[str]) -> set[int]:
    return {int((await get(http, url)).text.removeprefix("pid=")) for url in upstreams}


def records(settings: SchedulerSettings) -> list[ReplicaRecord]:
    directory = settings.runtime_dir / "replicas"
    return [ReplicaRecord.model_validate_json(p.read_bytes()) for p in directory.glob("*.json")]


def gone(pid: int) -> bool:
    return process_start_ticks(pid) is None


async def wait_until_gone(pids: set[int], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes {pids} still run"
        await asyncio.sleep(0.02)


async def test_two_replicas_serve_on_their_own_ports_and_a_killed_one_comes_back(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    reports = Reports()
    driver = LocalDriver(settings, reports)
    workload = a_workload(tmp_path, replicas=2)
    try:
        assert await driver.ensure(workload)
        ready = await reports.wait_for("two ready replicas", ready_with(2))
        pids = await pids_behind(http, ready.upstreams)
        assert len(pids) == 2
        assert not await driver.ensure(workload), "the same workload again changed something"

        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        fewer = await reports.wait_for("one replica serving", ready_with(1))
        assert fewer.reason is not None and "exited with code -9" in fewer.reason
        back = await reports.wait_for(
            "two replicas again", lambda s: s is not ready and ready_with(2)(s) and s is not fewer
        )
        assert victim not in await pids_behind(http, back.upstreams)

        logs = await driver.logs(workload.key, tail=10)
        assert [entry.replica for entry in logs] == [0, 1]
        assert all(any("listening pid=" in line for line in e.lines) for e in logs)
    finally:
        await driver.close()
    await wait_until_gone(await_pids(settings) | {victim})
    assert records(settings) == []


def await_pids(settings: SchedulerSettings) -> set[int]:
    return {record.pid for record in records(settings)}


async def test_a_restarted_scheduler_adopts_the_running_replicas_instead_of_starting_new_ones(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    workload = a_workload(tmp_path, replicas=2)
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    first_reports = Reports()
    first = LocalDriver(keep, first_reports)
    await first.ensure(workload)
    first_ready = await first_reports.wait_for("ready", ready_with(2))
    pids = await pids_behind(http, first_ready.upstreams)
    await first.close()  # the scheduler stops, its replicas keep serving
    assert await pids_behind(http, first_ready.upstreams) == pids

    reports = Reports()
    second = LocalDriver(settings, reports)
    try:
        assert await second.ensure(workload)
        adopted = await reports.wait_for("adopted replicas ready", ready_with(2))
        assert sorted(adopted.upstreams) == sorted(first_ready.upstreams)
        assert await pids_behind(http, adopted.upstreams) == pids
        assert second.reap_leftovers() == 0, "an adopted replica was reaped"

        os.kill(sorted(pids)[0], signal.SIGKILL)  # not our child: still noticed, restarted
        await reports.wait_for("one replica serving", ready_with(1))
        again = await reports.wait_for(
            "two replicas again", lambda s: ready_with(2)(s) and s is not adopted
        )
        assert len(await pids_behind(http, again.upstreams) - pids) == 1
    finally:
        await second.close()
    await wait_until_gone(pids)
    assert records(settings) == []


async def test_adopted_replicas_serving_are_never_reported_as_deploying(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    # A "deploying" report takes the endpoint's routes away until the next "ready": a
    # restarted scheduler made the router answer 404 for replicas that never stopped.
    workload = a_workload(tmp_path, replicas=2)
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    first_reports = Reports()
    first = LocalDriver(keep, first_reports)
    await first.ensure(workload)
    await first_reports.wait_for("ready", ready_with(2))
    await first.close()
    reports = Reports()
    second = LocalDriver(settings, reports)
    try:
        await second.ensure(workload)
        await reports.wait_for("adopted replicas ready", ready_with(2))
        assert [s.state for s in reports.seen] == [WorkloadState.READY], reports.seen
    finally:
        await second.close()


async def test_leftovers_nobody_wants_are_reaped_but_strangers_are_left_alone(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    reports = Reports()
    first = LocalDriver(keep, reports)
    await first.ensure(a_workload(tmp_path, replicas=2))
    ready = await reports.wait_for("ready", ready_with(2))
    pids = await pids_behind(http, ready.upstreams)
    await first.close()
    (tmp_path / "elsewhere").mkdir()
    stranger = await asyncio.create_subprocess_exec("sleep", "60", cwd=tmp_path / "elsewhere")
    started = process_start_ticks(stranger.pid)
    assert started is not None
    stranger_record = ReplicaRecord(
        key="x/y/z", index=0, manifest_digest="m", port=1, pid=stranger.pid, started=started
    )
    (keep.runtime_dir / "replicas" / "stranger.json").write_text(stranger_record.model_dump_json())
    try:
        assert LocalDriver(settings, Reports()).reap_leftovers() == 2
        await wait_until_gone(pids)
        assert stranger.returncode is None and not gone(stranger.pid)
        assert records(settings) == []
    finally:
        stranger.kill()
        await stranger.wait()


async def test_replicas_of_two_versions_on_one_hard_coded_port_serve_side_by_side(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    # As real projects do: the port is in the command (valohai.yaml's port is 8000).
    command = ["sh", "-c", "exec python3 server.py"]
    hard_coded = SERVER.replace(b'os.environ["HOST"], int(os.environ["PORT"])', b'"0.0.0.0", 8000')
    reports = Reports()
    driver = LocalDriver(settings, reports)
    first = a_workload(tmp_path, replicas=2, command=command, server=hard_coded)
    second = a_workload(tmp_path / "v2", replicas=2, command=command, server=hard_coded, name="v2")
    try:
        await driver.ensure(first)
        await driver.ensure(second)
        ready = [
            await reports.wait_for(
                w.key, lambda s, v=w.version.name: s.version == v and ready_with(2)(s)
            )
            for w in (first, second)
        ]
        pids = [await pids_behind(http, state.upstreams) for state in ready]
    finally:
        await driver.close()
    assert all(len(p) == 2 for p in pids) and not pids[0] & pids[1], pids
    assert all(u.startswith("unix:") for state in ready for u in state.upstreams)
    assert any("listens on port 8000" in note for note in ready[0].notes), ready[0].notes


async def test_a_replica_listening_on_another_port_fails_naming_the_ports_it_listens_on(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    command = ["python3", "-m", "http.server", "8123"]
    reports = Reports()
    driver = LocalDriver(settings.model_copy(update={"readiness_timeout_s": 3.0}), reports)
    try:
        await driver.ensure(a_workload(tmp_path, replicas=1, command=command))
        failed = await reports.wait_for("failure", lambda s: s.state is WorkloadState.FAILED)
    finally:
        await driver.close()
    assert failed.reason is not None
    assert "not listening on its declared port 8000" in failed.reason, failed.reason
    assert "it listens on 8123 instead" in failed.reason, failed.reason
    assert "-15" not in failed.reason and "SIGTERM" not in failed.reason


async def test_without_namespaces_a_hard_coded_port_fails_with_a_reason_saying_to_use_port(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    port = 20000 + os.getpid() % 20000
    command = ["sh", "-c", f"exec python3 -m http.server {port} --bind $HOST"]
    reports = Reports()
    driver = LocalDriver(settings.model_copy(update={"local_namespaces": False}), reports)
    try:
        await driver.ensure(a_workload(tmp_path, replicas=2, command=command))
        failed = await reports.wait_for("failure", lambda s: s.state is WorkloadState.FAILED)
    finally:
        await driver.close()
    assert failed.reason is not None
    assert "$PORT" in failed.reason, failed.reason
    assert any("namespaces are unavailable" in note for note in failed.notes), failed.notes


async def test_a_replica_over_its_memory_limit_fails_saying_so(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    # 256 MB at start under a 64 MB limit: the allocation fails, as it would be killed
    # for memory in a container.
    command = ["python3", "-c", "block = bytearray(256 * 1024 * 1024)"]
    resources = {"memory": {"max": 64}, "cpu": 1}
    reports = Reports()
    driver = LocalDriver(settings, reports)
    try:
        await driver.ensure(a_workload(tmp_path, 1, command=command, resources=resources))
        failed = await reports.wait_for("failure", lambda s: s.state is WorkloadState.FAILED)
    finally:
        await driver.close()
    assert failed.reason is not None and "MemoryError" in failed.reason, failed.reason
    assert "out of memory: resources.memory is 64 MB" in failed.reason, failed.reason
    assert any("64 MB limits the replica's data" in note for note in failed.notes), failed.notes
    assert any("resources.cpu is not honoured" in note for note in failed.notes), failed.notes


async def test_a_replica_that_keeps_exiting_is_reported_crash_looping(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    # Serves for a moment, then exits: ready each time, and each time gone again.
    command = [
        "python3",
        "-c",
        "import os, socket, time; s = socket.create_server((os.environ['HOST'], "
        "int(os.environ['PORT']))); print('up', flush=True); time.sleep(0.2); raise SystemExit(3)",
    ]
    reports = Reports()
    driver = LocalDriver(settings, reports)
    try:
        await driver.ensure(a_workload(tmp_path, replicas=1, command=command))
        looping = await reports.wait_for(
            "a crash-looping report",
            lambda s: s.state is WorkloadState.DEPLOYING and "crash-looping" in (s.reason or ""),
        )
    finally:
        await driver.close()
    assert looping.reason is not None and "exited with code 3" in looping.reason
    assert looping.upstreams == []


async def test_a_target_address_this_machine_lacks_fails_naming_the_address(
    tmp_path: Path, settings: SchedulerSettings
) -> None:
    workload = a_workload(tmp_path, 1)
    # 192.0.2.0/24 is for documentation: no interface here has it.
    elsewhere = workload.target.model_copy(update={"address": "192.0.2.7"})
    workload = Workload(workload.version, workload.endpoint, elsewhere, workload.manifest_digest)
    # Replicas use their target's address only where they have no namespaces of their own.
    driver = LocalDriver(settings.model_copy(update={"local_namespaces": False}), Reports())

    with pytest.raises(PermanentError, match=r"cannot listen on 192\.0\.2\.7"):
        await driver.ensure(workload)
    await driver.close()


def test_a_layer_that_is_not_zstd_fails_the_unpacking_with_a_reason(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "layout")
    layout.ensure()
    layer = b"not zstd at all" * 10
    layout.add_blob(layer)
    config = canonical_json({"config": {"Cmd": ["true"]}})
    layout.add_blob(config)
    manifest = layout.add_blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+zstd", layer)],
            }
        )
    )
    image = ImageInfo(
        reference=f"oci:{tmp_path / 'layout'}:v1", digest=manifest, layers=[], endpoints={}
    )

    with pytest.raises(PermanentError, match="is not readable zstd"):
        unpack_image(image, manifest, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == [], "a half-unpacked tree was left"


class FlakyReports(Reports):
    """Reports that fail (NATS away) while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def __call__(self, state: EndpointState) -> None:
        if self.down:
            raise DockyardError("NATS is away")
        await super().__call__(state)


async def test_a_replica_scaled_down_drains_from_the_published_report_and_scale_does_not_wait(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    # The drain ran from scale() on, before the smaller upstream list was published: with
    # NATS slow, the replica stopped while every router still sent requests to it.
    reports = FlakyReports()
    driver = LocalDriver(settings.model_copy(update={"scale_down_drain_s": 0.5}), reports)
    workload = a_workload(tmp_path, replicas=1, max_replicas=2)
    try:
        await driver.ensure(workload)
        await reports.wait_for("one ready", ready_with(1))
        assert await driver.scale(workload.key, 2, "load")
        two = await reports.wait_for("two ready", ready_with(2))
        pids = await pids_behind(http, two.upstreams)
        assert len(pids) == 2

        reports.down = True
        seen = len(reports.seen)
        # Returns at once: the report waits for NATS outside the reconciler's lock.
        assert await asyncio.wait_for(driver.scale(workload.key, 1, "load"), 1.0)
        await asyncio.sleep(2.0)  # four drains, the report retried all along
        assert len(reports.seen) == seen
        assert await pids_behind(http, two.upstreams) == pids, "stopped while still routed"
        assert [r.retiring for r in records(settings)].count(True) == 1

        reports.down = False
        one = await reports.wait_for("one upstream", ready_with(1), within_s=15)
        [staying] = await pids_behind(http, one.upstreams)
        await wait_until_gone(pids - {staying}, within_s=0.5 + settings.stop_grace_s + 2)
        assert [r.retiring for r in records(settings)] == [False]
    finally:
        await driver.close()


async def test_a_restarted_scheduler_adopts_the_replicas_the_autoscaler_added(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    # Only the indexes below min were adopted: the autoscaler's were SIGKILLed by the
    # reaping while the routers still sent to them.
    workload = a_workload(tmp_path, replicas=1, max_replicas=3)
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    first_reports = Reports()
    first = LocalDriver(keep, first_reports)
    await first.ensure(workload)
    await first_reports.wait_for("one ready", ready_with(1))
    assert await first.scale(workload.key, 3, "load")
    three = await first_reports.wait_for("three ready", ready_with(3))
    pids = await pids_behind(http, three.upstreams)
    await first.close()

    reports = Reports()
    second = LocalDriver(settings, reports)
    try:
        await second.ensure(workload)
        adopted = await reports.wait_for("adopted replicas ready", ready_with(3))
        assert sorted(adopted.upstreams) == sorted(three.upstreams)
        assert second.reap_leftovers() == 0, "an adopted replica was reaped"
        assert await pids_behind(http, adopted.upstreams) == pids
        assert second.replica_count(workload.key) == 3
    finally:
        await second.close()
    await wait_until_gone(pids)


async def test_a_restarted_scheduler_stops_a_replica_that_was_retiring_instead_of_adopting_it(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    workload = a_workload(tmp_path, replicas=1, max_replicas=2)
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    first_reports = FlakyReports()
    first = LocalDriver(keep, first_reports)
    await first.ensure(workload)
    await first_reports.wait_for("one ready", ready_with(1))
    assert await first.scale(workload.key, 2, "load")
    two = await first_reports.wait_for("two ready", ready_with(2))
    first_reports.down = True  # the smaller list is not published: the replica stays retiring
    assert await first.scale(workload.key, 1, "load")
    [retiring] = [r for r in records(settings) if r.retiring]
    assert not gone(retiring.pid)
    retiring_upstream = f"unix:{retiring.socket}" if retiring.socket else None

    # A second scheduler starts meanwhile (the first one as good as dead).
    reports = Reports()
    second = LocalDriver(settings, reports)
    try:
        await second.ensure(workload)
        adopted = await reports.wait_for("one replica", ready_with(1))
        assert adopted.upstreams[0] in two.upstreams
        if retiring_upstream is not None:
            assert adopted.upstreams[0] != retiring_upstream
        assert second.reap_leftovers() == 1
        await wait_until_gone({retiring.pid})
    finally:
        first_reports.down = False
        await first.close()  # leaves replica 0 running: the second stops it
        await second.close()
    assert records(settings) == []


async def test_a_restarted_scheduler_starts_a_fresh_replica_beside_a_last_one_retiring(
    tmp_path: Path, settings: SchedulerSettings, http: httpx.AsyncClient
) -> None:
    # Its record is at index 0: adopted as serving, the endpoint idling would have kept it.
    workload = a_workload(tmp_path, replicas=0, max_replicas=1)
    keep = settings.model_copy(update={"keep_replicas_on_exit": True})
    first_reports = FlakyReports()
    first = LocalDriver(keep, first_reports)
    await first.ensure(workload)
    one = await first_reports.wait_for("one ready", ready_with(1))
    first_reports.down = True
    assert await first.scale(workload.key, 0, "idle")
    [retiring] = records(settings)
    assert retiring.retiring and retiring.index == 0

    reports = Reports()
    second = LocalDriver(settings, reports)
    try:
        await second.ensure(workload)  # the endpoint idles again later: the autoscaler's
        fresh = await reports.wait_for("a fresh replica", ready_with(1))
        assert fresh.upstreams != one.upstreams
        assert second.reap_leftovers() == 1
        await wait_until_gone({retiring.pid})
        assert (await get(http, fresh.upstreams[0])).status_code == 200
    finally:
        first_reports.down = False
        await first.close()
        await second.close()
    assert records(settings) == []
