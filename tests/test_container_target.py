"""The container target driver runs builder-made images on a real engine (podman's Docker API).

Images are built by the builder into an OCI layout on a busybox base that the engine holds
(made from Debian's busybox-static); the driver composes base and layers in the engine.
Skipped, with the reason printed, where no engine answers at ``DOCKER_HOST``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from dockyard_builder.build import build_version
from dockyard_builder.settings import BuilderSettings
from dockyard_common import (
    CodeRef,
    DockyardError,
    EndpointSpec,
    EndpointState,
    Target,
    TargetKind,
    Version,
)
from dockyard_common.models import Replicas, WorkloadState
from dockyard_scheduler.desired import Workload, desired_workloads
from dockyard_scheduler.drivers.container import ContainerDriver
from dockyard_scheduler.drivers.container.engine import (
    LABEL_KEY,
    LABEL_OWNER,
    LABEL_PORT,
    ContainerGone,
    Engine,
    EngineRefused,
    EngineUnavailable,
)
from dockyard_scheduler.drivers.container.images import IMAGE_REPOSITORY
from dockyard_scheduler.settings import SchedulerSettings
from tests.harness.containers import busybox_image, engine_or_skip, ensure_image

ADDRESS = "127.0.3.1"
WAIT_S = 30.0
SERVE = "busybox httpd -f -p {port} -h /app/www"


@dataclass
class Reports:
    """Every state the driver reported, and a way to wait for one."""

    seen: list[EndpointState] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    down: bool = False
    """Reports fail (NATS away) while set."""

    async def __call__(self, state: EndpointState) -> None:
        if self.down:
            raise DockyardError("NATS is away")
        self.seen.append(state)
        self.changed.set()

    async def wait_for(
        self, what: str, predicate: Callable[[EndpointState], bool], after: int = 0
    ) -> EndpointState:
        """The first report from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + WAIT_S
        while True:
            for state in self.seen[after:]:
                if predicate(state):
                    return state
                if state.state is WorkloadState.FAILED:
                    pytest.fail(f"failed while waiting for a report {what}: {state.reason}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(s.state.value, s.upstreams, s.reason) for s in self.seen]
                pytest.fail(f"no report {what} within {WAIT_S} s; reported: {seen}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = engine_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="module")
def base_image(engine: Any) -> str:
    return busybox_image(engine)


@pytest.fixture
def settings(tmp_path: Path, engine: Any) -> SchedulerSettings:
    return SchedulerSettings(
        data_dir=tmp_path / "scheduler",
        readiness_timeout_s=5.0,
        restart_backoff_s=(0.1,),
    )


@pytest.fixture
async def driver(settings: SchedulerSettings) -> AsyncIterator[tuple[ContainerDriver, Reports]]:
    reports = Reports()
    driver = ContainerDriver(settings, reports)
    try:
        yield driver, reports
    finally:
        # Removing (not only closing) also removes the images made for the test.
        for key in driver.workload_keys():
            await driver.remove(key)
        await driver.close()


def _workload(
    tmp_path: Path,
    base_image: str,
    command: str,
    *,
    port: int | None = None,
    replicas: int = 1,
    resources: dict[str, Any] | None = None,
) -> Workload:
    """A one-endpoint version the builder built on ``base_image``, on a container target."""
    code = tmp_path / f"code-{secrets.token_hex(3)}"
    (code / "www").mkdir(parents=True)
    (code / "www" / "index.html").write_text("served from the code layer\n")
    version = Version(
        owner="acme",
        project="demo",
        deployment="containers",
        name=f"v{secrets.token_hex(3)}",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[
            EndpointSpec.model_validate(
                {
                    "name": "web",
                    "server-command": command,
                    "port": port,
                    "replicas": Replicas(min=replicas, max=replicas),
                    "resources": resources or {},
                }
            )
        ],
        targets=["box"],
    )
    builder = BuilderSettings(data_dir=tmp_path / "builder", default_base_image=base_image)
    image = build_version(version, code, builder)
    target = Target(name="box", region="box", kind=TargetKind.CONTAINER, address=ADDRESS)
    workloads, _ = desired_workloads(version.model_copy(update={"image": image}), {"box": target})
    return workloads[0]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback, ours)
        return bytes(response.read()).decode()


def _ours(engine: Any, settings: SchedulerSettings) -> list[Any]:
    return list(
        engine.containers.list(
            all=True, filters={"label": f"{LABEL_OWNER}={settings.container_owner}"}
        )
    )


def _ready(state: EndpointState) -> bool:
    return state.state is WorkloadState.READY


@pytest.mark.docker
async def test_a_replica_serves_the_code_layer_on_its_published_port_within_its_limits(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    command = (
        'busybox mkdir -p /tmp/www && echo "$VH_DEFAULT_PREFIX" > /tmp/www/prefix'
        " && busybox cp www/index.html /tmp/www/ && busybox httpd -f -p $PORT -h /tmp/www"
    )
    resources = {"cpu": {"max": 0.5}, "memory": {"max": 64}}
    workload = _workload(tmp_path, base_image, command, resources=resources)

    assert await container_driver.ensure(workload) is True
    ready = await reports.wait_for("ready", _ready)

    (upstream,) = ready.upstreams
    assert upstream.startswith(f"http://{ADDRESS}:")
    assert await asyncio.to_thread(_get, f"{upstream}/index.html") == "served from the code layer\n"
    prefix = await asyncio.to_thread(_get, f"{upstream}/prefix")
    assert prefix.strip() == f"/acme/demo/containers/{workload.version.name}/web"
    assert await container_driver.ensure(workload) is False, "the same workload changed again"
    (container,) = _ours(engine, settings)
    assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000


@pytest.mark.docker
async def test_two_replicas_with_a_hard_coded_port_both_serve(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    workload = _workload(tmp_path, base_image, SERVE.format(port=8080), port=8080, replicas=2)

    await container_driver.ensure(workload)
    both = await reports.wait_for("ready with two upstreams", lambda s: len(s.upstreams) == 2)

    for upstream in both.upstreams:
        assert "code layer" in await asyncio.to_thread(_get, f"{upstream}/index.html")
    assert len(_ours(engine, settings)) == 2

    assert await container_driver.remove(workload.key) is True
    assert _ours(engine, settings) == [], "a stopped workload left containers behind"
    tag = f"{IMAGE_REPOSITORY}:{workload.manifest_digest.removeprefix('sha256:')}"
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(tag)


@pytest.mark.docker
async def test_the_autoscaler_s_count_adds_containers_and_removes_them_after_the_route(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"))
    await container_driver.ensure(workload)
    await reports.wait_for("ready", lambda s: len(s.upstreams) == 1)
    assert container_driver.replica_count(workload.key) == 1

    assert await container_driver.scale(workload.key, 3, "load") is True
    three = await reports.wait_for("three upstreams", lambda s: len(s.upstreams) == 3)
    assert (three.desired_replicas, three.scaled_because) == (3, "load")
    assert len(_ours(engine, settings)) == 3

    seen = len(reports.seen)
    assert await container_driver.scale(workload.key, 1, "load") is True
    # The report without the two leaving comes first: they still run for the drain.
    one = await reports.wait_for("one upstream", lambda s: len(s.upstreams) == 1, after=seen)
    assert one.upstreams[0] in three.upstreams
    assert len(_ours(engine, settings)) == 3
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if len(_ours(engine, settings)) == 1:
                break
        except docker.errors.APIError:  # listed, then removed before it was looked at
            pass
        assert time.monotonic() < deadline, "the scaled-down containers were not removed"
        await asyncio.sleep(0.2)
    assert "code layer" in await asyncio.to_thread(_get, f"{one.upstreams[0]}/index.html")
    await container_driver.remove(workload.key)


@pytest.mark.docker
async def test_containers_scaled_down_stay_until_their_report_is_published_and_a_drain_after(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    # The drain ran from scale() on: with NATS slow to take the smaller upstream list, the
    # containers were removed while every router still sent requests to them.
    container_driver, reports = driver
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"))
    await container_driver.ensure(workload)
    await reports.wait_for("ready", lambda s: len(s.upstreams) == 1)
    assert await container_driver.scale(workload.key, 2, "load") is True
    await reports.wait_for("two upstreams", lambda s: len(s.upstreams) == 2)

    reports.down = True  # NATS goes away
    seen = len(reports.seen)
    # Returns at once: the report waits for NATS outside the reconciler's lock.
    assert await asyncio.wait_for(container_driver.scale(workload.key, 1, "load"), 1.0)
    await asyncio.sleep(settings.scale_down_drain_s + 1.5)
    assert len(reports.seen) == seen
    assert len(_ours(engine, settings)) == 2, "removed while still routed"
    reports.down = False
    await reports.wait_for("one upstream", lambda s: len(s.upstreams) == 1, after=seen)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if len(_ours(engine, settings)) == 1:
                break
        except docker.errors.APIError:  # listed, then removed before it was looked at
            pass
        assert time.monotonic() < deadline, "the scaled-down container was not removed"
        await asyncio.sleep(0.2)


@pytest.mark.docker
async def test_a_workload_removed_while_its_container_starts_leaves_none(
    tmp_path: Path, base_image: str, engine: Any, settings: SchedulerSettings
) -> None:
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"))
    other = Target(name="other", region="other", kind=TargetKind.CONTAINER, address=ADDRESS)
    again = dataclasses.replace(workload, target=other)  # the same image, made already
    reports = Reports()
    driver = ContainerDriver(settings, reports)
    try:
        await driver.ensure(workload)
        await reports.wait_for("ready", _ready)
        (kept,) = _ours(engine, settings)
        await driver.ensure(again)
        await reports.wait_for("deploying", lambda s: s.target == "other")
        await driver.remove(again.key)  # most often while the engine starts the container

        assert [c.id for c in _ours(engine, settings)] == [kept.id]
        await driver.remove(workload.key)
    finally:
        await driver.close()

    assert _ours(engine, settings) == [], "a container started for a removed workload remains"
    tag = f"{IMAGE_REPOSITORY}:{workload.manifest_digest.removeprefix('sha256:')}"
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(tag)


@pytest.mark.docker
async def test_a_replica_that_dies_is_replaced_and_the_crash_reported(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"))
    await container_driver.ensure(workload)
    first = await reports.wait_for("ready", _ready)
    (container,) = _ours(engine, settings)

    await asyncio.to_thread(container.kill)
    crashed = await reports.wait_for(
        "of the crash", lambda s: s.state is WorkloadState.DEPLOYING and bool(s.reason)
    )
    again = await reports.wait_for("ready again", _ready, after=reports.seen.index(crashed))

    assert "exited with code" in (crashed.reason or "")
    assert "crash-looping" in (crashed.reason or "")
    assert again.upstreams != first.upstreams or again is not first
    assert "code layer" in await asyncio.to_thread(_get, f"{again.upstreams[0]}/index.html")
    assert [c.id for c in _ours(engine, settings)] != [container.id]


@pytest.mark.docker
async def test_a_server_that_never_answers_fails_with_its_last_lines(
    tmp_path: Path, base_image: str, engine: Any, settings: SchedulerSettings
) -> None:
    reports = Reports()
    impatient = settings.model_copy(update={"readiness_timeout_s": 1.0})
    container_driver = ContainerDriver(impatient, reports)
    workload = _workload(tmp_path, base_image, "echo warming up forever; exec busybox sleep 60")

    await container_driver.ensure(workload)
    failed = await reports.wait_for("failed", lambda s: s.state is WorkloadState.FAILED)

    await container_driver.close()
    # Read from the container's socket table: the engine runs on this machine.
    assert "not listening on its declared port" in (failed.reason or "")
    assert "it listens on no TCP port" in (failed.reason or "")
    assert "warming up forever" in (failed.reason or "")
    assert _ours(engine, settings) == [], "a failed replica's container was left behind"


@pytest.mark.docker
async def test_a_server_on_the_containers_loopback_only_fails_saying_to_listen_on_every_address(
    tmp_path: Path, base_image: str, engine: Any, settings: SchedulerSettings
) -> None:
    reports = Reports()
    impatient = settings.model_copy(update={"readiness_timeout_s": 2.0})
    container_driver = ContainerDriver(impatient, reports)
    # uvicorn's default: reachable from inside the container only.
    workload = _workload(tmp_path, base_image, SERVE.format(port="127.0.0.1:$PORT"))

    await container_driver.ensure(workload)
    failed = await reports.wait_for("failed", lambda s: s.state is WorkloadState.FAILED)

    await container_driver.close()
    port = workload.endpoint.listen_port
    assert f"listens on its declared port {port} on 127.0.0.1 only" in (failed.reason or "")
    assert "listen on 0.0.0.0" in (failed.reason or "")


@pytest.mark.docker
async def test_an_image_whose_base_the_engine_lacks_fails_naming_the_base(
    tmp_path: Path, driver: tuple[ContainerDriver, Reports]
) -> None:
    container_driver, reports = driver
    missing = f"localhost/dockyard-test-absent-{secrets.token_hex(3)}:1"
    workload = _workload(tmp_path, missing, SERVE.format(port="$PORT"))

    await container_driver.ensure(workload)
    failed = await reports.wait_for("failed", lambda s: s.state is WorkloadState.FAILED)

    assert missing in (failed.reason or "")
    assert "could not pull" in (failed.reason or "")


@pytest.mark.docker
async def test_a_restarted_scheduler_adopts_running_replicas_and_removes_the_rest(
    tmp_path: Path, base_image: str, engine: Any, settings: SchedulerSettings
) -> None:
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"))
    first_reports = Reports()
    assert settings.container_engine_url is not None
    first_engine = Engine(settings.container_engine_url, settings.container_owner)
    first = ContainerDriver(settings, first_reports, first_engine)
    await first.ensure(workload)
    ready = await first_reports.wait_for("ready", _ready)
    (running,) = _ours(engine, settings)
    stopped = engine.containers.create(
        base_image, ["sh", "-c", "exit 0"], labels={LABEL_OWNER: settings.container_owner}
    )
    unwanted = engine.containers.run(
        base_image,
        ["sh", "-c", "exec busybox httpd -f -p 8000"],
        labels={
            LABEL_OWNER: settings.container_owner,
            LABEL_KEY: "a/stopped/version",
            LABEL_PORT: "8000",
        },
        ports={"8000/tcp": (ADDRESS, None)},
        init=True,  # as the driver runs its own: a stop needs no grace period
        detach=True,
    )
    # The first scheduler dies without stopping anything (its supervisors die with it).
    for group in list(first._groups.values()):
        for replica in group.replicas:
            assert replica.task is not None
            replica.task.cancel()

    second_reports = Reports()
    second = ContainerDriver(settings, second_reports)
    try:
        assert await asyncio.to_thread(second.reap_leftovers) == 1
        assert workload.key in second.workload_keys()
        await second.ensure(workload)
        adopted = await second_reports.wait_for("ready", _ready)

        assert adopted.upstreams == ready.upstreams
        assert stopped.id not in [c.id for c in _ours(engine, settings)]
        # What the reconciler then does with a leftover no version wants:
        assert second.workload_keys() == {workload.key, "a/stopped/version"}
        assert await second.remove("a/stopped/version") is True
        assert [c.id for c in _ours(engine, settings)] == [running.id]
        assert unwanted.id not in [c.id for c in _ours(engine, settings)]
    finally:
        await second.remove(workload.key)
        await second.close()
        first_engine.close()  # its connection only: the "dead" scheduler stops nothing
    assert _ours(engine, settings) == []


@pytest.mark.docker
async def test_the_engine_seam_answers_in_its_own_errors_never_the_sdk_s(
    engine: Any, settings: SchedulerSettings
) -> None:
    assert settings.container_engine_url is not None
    seam = Engine(settings.container_engine_url, settings.container_owner)
    absent = secrets.token_hex(8)
    missing = f"localhost/dockyard-test-absent-{secrets.token_hex(3)}:1"
    try:
        await seam.call(seam.connect)
        with pytest.raises(ContainerGone, match=absent[:12]):
            await seam.call(seam.exit_code, absent)
        with pytest.raises(ContainerGone, match=absent[:12]):
            await seam.call(seam.log_lines, absent, 5)
        assert await seam.call(seam.log_tail, absent, 5) == ""
        await seam.call(seam.remove, absent, 0.0)  # already gone is what was asked
        assert await seam.call(seam.has_image, missing) is False
        with pytest.raises(EngineRefused, match=f"could not start a container of {missing}"):
            await seam.call(
                seam.start,
                missing,
                name=f"dockyard-test-{absent}",
                labels={},
                address=ADDRESS,
                container_port=8000,
                config={},
                environment={},
                limits={},
            )
    finally:
        seam.close()


async def test_without_an_engine_a_container_target_fails_naming_where_it_looked(
    tmp_path: Path,
) -> None:
    absent = f"unix://{tmp_path}/absent.sock"
    settings = SchedulerSettings(data_dir=tmp_path, docker_host=absent)
    driver = ContainerDriver(settings, Reports())
    target = Target(name="box", region="box", kind=TargetKind.CONTAINER, address=ADDRESS)
    version = Version(
        owner="acme",
        project="demo",
        deployment="containers",
        name="v1",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[EndpointSpec.model_validate({"name": "web", "server-command": "true"})],
        targets=["box"],
    )
    workload = Workload(version, version.endpoints[0], target, f"sha256:{'1' * 64}")

    assert driver.reap_leftovers() == 0
    with pytest.raises(EngineUnavailable, match=f"no container engine answers at {absent}"):
        await driver.ensure(workload)
    await driver.close()


@pytest.fixture(scope="module")
def marked_base(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second base: busybox with /etc/base-name saying "marked"."""
    marker = tmp_path_factory.mktemp("marked") / "base-name"
    marker.write_text("marked\n")
    busybox = Path("/bin/busybox")
    return ensure_image(
        engine,
        "localhost/dockyard-test-busybox-marked:1",
        files={"/bin/busybox": busybox, "/bin/sh": busybox, "/etc/base-name": marker},
        entrypoint=[],
    )


SHOW = (
    "busybox mkdir -p /tmp/www && (busybox cat /etc/base-name 2>/dev/null || echo plain)"
    " > /tmp/www/base && busybox cp valohai-metadata.json /tmp/www/metadata.json"
    " && busybox httpd -f -p $PORT -h /tmp/www"
)


@pytest.mark.docker
async def test_each_endpoint_runs_from_the_image_of_its_own_base_with_its_runtime_file(
    tmp_path: Path,
    base_image: str,
    marked_base: str,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("")
    version = Version(
        owner="acme",
        project="demo",
        deployment="containers",
        name=f"v{secrets.token_hex(3)}",
        code=CodeRef(blob=f"sha256:{'0' * 64}"),
        endpoints=[
            EndpointSpec.model_validate({"name": n, "server-command": SHOW, "image": base})
            for n, base in (("plain", base_image), ("marked", marked_base))
        ],
        targets=["box"],
    )
    image = build_version(version, code, BuilderSettings(data_dir=tmp_path / "builder"))
    assert image.bases == {"plain": base_image, "marked": marked_base}
    target = Target(name="box", region="box", kind=TargetKind.CONTAINER, address=ADDRESS)
    workloads, _ = desired_workloads(version.model_copy(update={"image": image}), {"box": target})

    served = {}
    for workload in workloads:
        await container_driver.ensure(workload)
        name = workload.endpoint.name
        ready = await reports.wait_for(
            f"{name} ready", lambda s, name=name: s.endpoint == name and _ready(s)
        )
        (upstream,) = ready.upstreams
        served[name] = await asyncio.to_thread(_get, f"{upstream}/base")
        metadata = json.loads(await asyncio.to_thread(_get, f"{upstream}/metadata.json"))
        assert metadata["endpoint"]["name"] == name
        assert metadata["deployment"] == {
            "name": "containers",
            "target": "box",
            "url": "/acme/demo/containers/",
        }
        assert metadata["version"]["name"] == version.name
        assert any(f"its image's base {workload.endpoint.image}" in n for n in ready.notes)
    assert served == {"plain": "plain\n", "marked": "marked\n"}


@pytest.mark.docker
async def test_what_the_engine_cannot_honour_is_in_the_notes_and_the_rest_applies(
    tmp_path: Path,
    base_image: str,
    engine: Any,
    settings: SchedulerSettings,
    driver: tuple[ContainerDriver, Reports],
) -> None:
    container_driver, reports = driver
    resources = {"memory": {"min": 32, "max": 64}, "devices": {"nvidia.com/gpu": 1}}
    workload = _workload(tmp_path, base_image, SERVE.format(port="$PORT"), resources=resources)
    spec = workload.endpoint.model_copy(
        update={"node_selector": "gpu=a100", "tolerations": [{"key": "gpu"}]}
    )
    workload = dataclasses.replace(workload, endpoint=spec)

    await container_driver.ensure(workload)
    ready = await reports.wait_for("ready", _ready)

    (container,) = _ours(engine, settings)
    host = container.attrs["HostConfig"]
    assert (host["Memory"], host["MemoryReservation"]) == (64 * 1024**2, 32 * 1024**2)
    notes = "\n".join(ready.notes)
    assert "node-selector 'gpu=a100' is not honoured" in notes
    assert "tolerations (1) are not honoured" in notes
    # podman's Docker API drops device requests without a word: the note says so. (An engine
    # that keeps them runs the replica with the GPU, or refuses to start it, saying why.)
    if host.get("DeviceRequests"):
        assert "GPU" not in notes
    else:
        assert "asked for 1 GPU(s) and the container engine" in notes
    assert "listens on port 8000 in a container of its own" in notes
