"""Running a service process: one main coroutine, stopped cleanly by SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient

from dockyard_common.log import configure_logging, get_logger
from dockyard_common.runtime.jetstream import connect_nats, provision_jetstream
from dockyard_common.settings import CommonSettings

__all__ = [
    "LIVENESS_EVERY_S",
    "cancellable",
    "in_background",
    "keep_touching",
    "run_jetstream_service",
    "run_until_signalled",
]

T = TypeVar("T")

log = get_logger(__name__)

LIVENESS_EVERY_S = 5.0
"""How often a consumer service touches its liveness file: probes allow several times that."""


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` to completion; SIGTERM and SIGINT set ``stop`` for it to drain and end.

    A second signal cancels ``main`` outright.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            if stop.is_set() and task is not None:
                log.warning("service.stop.forced", signal=signal.Signals(signum).name)
                task.cancel()
                return
            log.info("service.stopping", signal=signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(runner())


async def cancellable(
    start: Callable[[], Coroutine[Any, Any, T]], *, again_after_s: float = 0.25
) -> T:
    """Run ``start()`` in a task of its own that a cancellation always ends.

    Python 3.11's ``asyncio.wait_for`` loses a cancellation that lands just as what it waits
    for completes (CPython gh-86296; rewritten in 3.12). redis-py calls it for every command
    it sends with a socket timeout (ours: 0.5 s), so a task cancelled at that moment goes on
    as if nothing happened: measured, nearly half of the cancellations of a loop of GETs.
    Here the work is cancelled again every ``again_after_s`` until it ends (a clean-up of
    its own that takes longer is cut short), and then the cancellation is raised; an error
    the work raised while ending is logged. (The work is made here, not passed in: work
    cancelled before it started is then never made, rather than made and never awaited.)
    """
    inner = asyncio.ensure_future(start())
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()
        again_at = loop.time()
        while not inner.done():
            if loop.time() >= again_at:
                inner.cancel()
                again_at = loop.time() + again_after_s
            # Cancelled once more meanwhile: the work still has to end first.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({inner}, timeout=max(0.0, again_at - loop.time()))
        if not inner.cancelled() and (error := inner.exception()) is not None:
            log.error("task.failed_while_cancelled", error=repr(error), exc_info=error)
        raise


def run_jetstream_service(
    name: str,
    settings: CommonSettings,
    work: Callable[[NatsClient], Coroutine[Any, Any, None]],
) -> None:
    """Run a service whose work is consuming the event stream, until SIGTERM.

    Connects to NATS, provisions JetStream, runs ``work(nc)`` and, on the signal, cancels it
    and drains the connection. A failing ``work`` ends the process with its error.
    """
    configure_logging(service=name, log_format=settings.log_format, level=settings.log_level)

    async def serve(stop: asyncio.Event) -> None:
        nc = await connect_nats(settings.nats_url, name=f"dockyard-{name}")
        try:
            await provision_jetstream(nc.jetstream())
            async with asyncio.TaskGroup() as tasks:
                workers = [tasks.create_task(work(nc))]
                if settings.liveness_file is not None:
                    workers.append(tasks.create_task(keep_touching(settings.liveness_file)))
                log.info("service.started", data_dir=str(settings.data_dir))
                await stop.wait()
                for worker in workers:
                    worker.cancel()
        finally:
            await nc.drain()

    run_until_signalled(serve)


async def keep_touching(path: Path, every_s: float = LIVENESS_EVERY_S) -> None:
    """Touch ``path`` every ``every_s`` until cancelled: the event loop still turns. (The
    write itself goes to a thread: a stalled disk is not a stuck process.)"""
    while True:
        await asyncio.to_thread(path.touch)
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, object]) -> AsyncIterator[None]:
    """Run ``work`` in a task of its own for the block; cancel it and wait for it after."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
