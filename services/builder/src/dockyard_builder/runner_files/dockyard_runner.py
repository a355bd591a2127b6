"""Dockyard's endpoint runner: serves a ``wsgi: module:callable`` endpoint on ``$PORT``.

Shipped in every version image (this file and the pure-Python waitress server beside it).
``GET /_dockyard/health`` answers without touching the user's code. Standard library only,
so that it runs on any Python base image.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HEALTH_PATH = "/_dockyard/health"


def load(target: str) -> WsgiApp:
    """Import ``module:callable`` (``module`` alone means ``module:application``)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    app: WsgiApp = getattr(module, attribute or "application")
    return app


def with_health(app: WsgiApp) -> WsgiApp:
    """Wrap ``app`` so that the health route never reaches it."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return app(environ, start_response)

    return dispatch


class QueueDepthSummary(logging.Filter):
    """Waitress warns "Task queue depth is N" for every request that has to wait for a worker
    thread: under load, a log line per request, written while it serves. Let one line through
    per ``interval_s``, naming the deepest queue and how many requests waited since the last.
    """

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.quiet_until = float("-inf")
        self.deepest = 0
        self.waited = 0

    def filter(self, record: logging.LogRecord) -> bool:
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else 0
        self.deepest = max(self.deepest, depth if isinstance(depth, int) else 0)
        self.waited += 1
        now = self.clock()
        if now < self.quiet_until:
            return False
        record.msg = "%d requests waited for a worker thread; deepest queue %d"
        record.args = (self.waited, self.deepest)
        self.quiet_until = now + self.interval_s
        self.deepest = self.waited = 0
        return True


def main(argv: list[str]) -> int:
    """``python -m dockyard_runner module:callable``."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m dockyard_runner module:callable\n")
        return 2
    sys.path.insert(0, os.getcwd())
    import waitress

    logging.getLogger("waitress.queue").addFilter(QueueDepthSummary())
    app = with_health(load(argv[1]))
    waitress.serve(
        app,
        # Inside a container the server must be reachable from outside its namespace.
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104
        port=int(os.environ.get("PORT", "8000")),
        threads=int(os.environ.get("DOCKYARD_WSGI_THREADS", "4")),
        ident="dockyard",
        _quiet=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
