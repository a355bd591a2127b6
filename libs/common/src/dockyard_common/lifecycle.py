"""Running a service process: one main coroutine, stopped cleanly by SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from dockyard_common.log import get_logger

__all__ = ["run_until_signalled"]

log = get_logger(__name__)


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
