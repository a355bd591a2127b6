"""Dockyard's endpoint runner: serves a ``wsgi: module:callable`` endpoint on ``$PORT``.

Shipped in every version image, with the HTTP server beside it (``dockyard_server.py``).
``GET /_dockyard/health`` answers without touching the user's code. Standard library only,
so that it runs on any Python base image.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Python 3.8 cannot subscript dict at run time
    from dockyard_server import WsgiApp

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


def main(argv: list[str]) -> int:
    """``python -m dockyard_runner module:callable``."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m dockyard_runner module:callable\n")
        return 2
    sys.path.insert(0, os.getcwd())
    import dockyard_server

    app = with_health(load(argv[1]))
    return dockyard_server.serve(
        app,
        # Inside a container the server must be reachable from outside its namespace.
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104
        port=int(os.environ.get("PORT", "8000")),
        max_requests=int(os.environ.get("DOCKYARD_WSGI_THREADS", "4")),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
