"""Several router processes on one port: ``DOCKYARD_ROUTER_WORKERS`` workers under one parent.

The parent serves nothing. It starts the workers (each ``python -m dockyard_router``, sharing
the port through SO_REUSEPORT) and passes SIGTERM and SIGINT on to them. A worker that ends
on its own after it served is started again, after a delay that doubles while it keeps
failing; one that ends before it ever served, on its first start (its port is taken, say),
ends the router, which says so with its exit code instead of retrying forever. Once asked
to stop, the parent waits for its workers' drain and no longer: past the bound, or soon
after a second signal, it kills what is left, so that when it has exited its workers have
too. It also gives them one directory for their metrics (:mod:`dockyard_router.metrics`),
removed when it ends, so that ``/metrics`` counts every worker's requests.

The workers stay in the parent's session. Where Linux groups CPU time by session
(autogroups, as for every service of the embedded platform), the router's workers share one
group, as they would share a container's CPU, instead of each weighing as much as a model
replica: measured with bench/router.py, that is 10-20 µs less router CPU per request and
higher proxied throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile

from dockyard_common import get_logger
from dockyard_common.runtime.processes import stop_with_parent
from dockyard_router.metrics import METRICS_DIR_ENV

__all__ = ["READY_FD_ENV", "WORKER_ENV", "restart_delay", "supervise"]

log = get_logger(__name__)

WORKER_ENV = "DOCKYARD_ROUTER_WORKER"
"""A worker's index (``RouterSettings.router_worker``): set, the process serves."""
READY_FD_ENV = "DOCKYARD_ROUTER_READY_FD"
"""The pipe a worker says it serves on (``RouterSettings.router_ready_fd``)."""

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STEADY_S = 60.0
"""A worker that ran this long is started again after the first delay, not a longer one."""
STOP_S = 35.0
"""How long workers may take to stop once asked: their drain (30 s) and a margin."""
FORCED_STOP_S = 5.0
"""How long they may take after a second signal."""


def restart_delay(
    *, first_run: bool, served: bool, ran_s: float, last_delay_s: float | None
) -> float | None:
    """How long to wait before starting again a worker that ended on its own; None when it
    ended on its first start before serving: the router cannot start."""
    if first_run and not served:
        return None
    if last_delay_s is None or ran_s >= STEADY_S:
        return FIRST_DELAY_S
    return min(last_delay_s * 2, MAX_DELAY_S)


async def supervise(count: int, listen_fd: int | None = None) -> int:
    """Run ``count`` workers until SIGTERM or SIGINT; the router's exit code. Each worker
    inherits ``listen_fd``, the listening socket this process was handed, if any."""
    metrics_dir = tempfile.mkdtemp(prefix="dockyard-router-metrics-")
    try:
        return await _supervise(count, listen_fd, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _supervise(count: int, listen_fd: int | None, metrics_dir: str) -> int:
    loop = asyncio.get_running_loop()
    stopping, forced = asyncio.Event(), asyncio.Event()
    workers: dict[int, asyncio.subprocess.Process] = {}
    failed: list[int] = []

    def stop(signum: int) -> None:
        """Pass the signal on: a second one makes the workers stop at once, as it does a
        single router process."""
        (forced if stopping.is_set() else stopping).set()
        for process in workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)

    async def keep_running(index: int) -> None:
        first_run, delay = True, None
        while not stopping.is_set():
            process, served = await _start_worker(index, listen_fd, metrics_dir)
            workers[index] = process
            if stopping.is_set():  # the signal came while the process was being made
                process.terminate()
            started = loop.time()
            code = await process.wait()
            if stopping.is_set():
                return
            delay = restart_delay(
                first_run=first_run,
                served=await served,  # settled by now: the pipe closed with the process
                ran_s=loop.time() - started,
                last_delay_s=delay,
            )
            if delay is None:
                log.error("router.worker.failed", worker=index, code=code)
                failed.append(code if code > 0 else 1)
                if not stopping.is_set():  # not a second signal for the others
                    stop(signal.SIGTERM)
                return
            log.warning("router.worker.exited", worker=index, code=code, restart_in_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            first_run = False

    async def kill_stragglers() -> None:
        await stopping.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forced.wait(), STOP_S)
        if forced.is_set():
            await asyncio.sleep(FORCED_STOP_S)
        for index, process in workers.items():
            if process.returncode is None:
                log.warning("router.worker.killed", worker=index)
                process.kill()

    async with asyncio.TaskGroup() as tasks:
        killer = tasks.create_task(kill_stragglers())
        running = [tasks.create_task(keep_running(index)) for index in range(count)]
        await asyncio.wait(running)
        killer.cancel()
    return failed[0] if failed else 0


async def _start_worker(
    index: int, listen_fd: int | None, metrics_dir: str
) -> tuple[asyncio.subprocess.Process, asyncio.Future[bool]]:
    """Start worker ``index``; the future says True once the worker serves, False if it
    ended before."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    served: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        # One byte: it serves. Nothing: the pipe closed, the worker ended first.
        said = os.read(read_end, 1)
        loop.remove_reader(read_end)
        os.close(read_end)
        if not served.done():
            served.set_result(bool(said))

    loop.add_reader(read_end, on_readable)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dockyard_router",
            env={
                **os.environ,
                WORKER_ENV: str(index),
                READY_FD_ENV: str(write_end),
                METRICS_DIR_ENV: metrics_dir,
            },
            pass_fds=(write_end,) if listen_fd is None else (write_end, listen_fd),
            preexec_fn=stop_with_parent,
            # A group of its own: a terminal's Ctrl-C reaches the parent, which passes it
            # on once (a second signal would cut the worker's drain short).
            process_group=0,
        )
    except BaseException:
        loop.remove_reader(read_end)
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return process, served
