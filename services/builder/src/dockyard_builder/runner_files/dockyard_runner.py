"""Dockyard's endpoint runner: serves a ``wsgi: module:callable`` endpoint on ``$PORT``.

Shipped in every version image (this file and the pure-Python waitress server beside it).
``GET /_dockyard/health`` answers without touching the user's code. Standard library only,
so that it runs on any Python base image.
"""

import importlib
import os
import sys

HEALTH_PATH = "/_dockyard/health"


def load(target):
    """Import ``module:callable`` (``module`` alone means ``module:application``)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute or "application")


def with_health(app):
    """Wrap ``app`` so that the health route never reaches it."""

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return app(environ, start_response)

    return dispatch


def main(argv):
    """``python -m dockyard_runner module:callable``."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m dockyard_runner module:callable\n")
        return 2
    sys.path.insert(0, os.getcwd())
    import waitress

    app = with_health(load(argv[1]))
    waitress.serve(
        app,
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8000")),
        threads=int(os.environ.get("DOCKYARD_WSGI_THREADS", "4")),
        ident="dockyard",
        _quiet=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
