"""Several router processes on one port: ``DOCKYARD_ROUTER_WORKERS`` workers under one parent.

The parent serves nothing. It starts the workers (each ``python -m dockyard_router``, sharing
the port through SO_REUSEPORT), passes SIGTERM and SIGINT on to them, and ends once they
have ended. A worker that exits on its own is started again after a delay that doubles while
it keeps failing; one that fails while the router is starting (its port is taken, say)
ends the router, which then says so with its exit code instead of retrying forever.

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
import signal
import sys

from dockyard_common import get_logger
from dockyard_common.processes import stop_with_parent

__all__ = ["WORKER_ENV", "supervise"]

log = get_logger(__name__)

WORKER_ENV = "DOCKYARD_ROUTER_WORKER"
"""Set (to its index) in a worker's environment: the process serves instead of supervising."""

_STARTING_S = 10.0
"""A worker's first run that fails (exit code > 0) sooner than this ends the router: it
cannot start. Killed by a signal, or later, the worker is started again."""
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 30.0
_STEADY_S = 60.0
"""A worker that ran this long is restarted after the first delay again."""


async def supervise(count: int) -> int:
    """Run ``count`` workers until SIGTERM or SIGINT; the router's exit code."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    workers: dict[int, asyncio.subprocess.Process] = {}
    failed: list[int] = []

    def stop(signum: int) -> None:
        """Pass the signal on: a second one makes the workers stop at once, as it does
        a single router process."""
        stopping.set()
        for process in workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)

    async def keep_running(index: int) -> None:
        delay, first = _FIRST_DELAY_S, True
        while not stopping.is_set():
            process = workers[index] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dockyard_router",
                env={**os.environ, WORKER_ENV: str(index)},
                preexec_fn=stop_with_parent,
                # A group of its own: a terminal's Ctrl-C reaches the parent, which passes
                # it on once (a second signal would cut the worker's drain short).
                process_group=0,
            )
            if stopping.is_set():  # the signal came while the process was being made
                process.terminate()
            started = loop.time()
            code = await process.wait()
            if stopping.is_set():
                return
            ran = loop.time() - started
            if first and code > 0 and ran < _STARTING_S:
                log.error("router.worker.failed", worker=index, code=code)
                failed.append(code or 1)
                stop(signal.SIGTERM)
                return
            delay = _FIRST_DELAY_S if ran >= _STEADY_S else delay
            log.warning("router.worker.exited", worker=index, code=code, restart_in_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay, first = min(delay * 2, _MAX_DELAY_S), False

    await asyncio.gather(*(keep_running(index) for index in range(count)))
    return failed[0] if failed else 0
