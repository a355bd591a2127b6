"""Dockyard's endpoint runner: serves a ``wsgi: module:callable`` endpoint on ``$PORT``.

Shipped in every version image, with the HTTP server beside it (``dockyard_server.py``).
``GET /_dockyard/health`` answers without touching the user's code. Standard library only,
so that it runs on any Python base image.

What it writes is the endpoint's log (``dockyard logs``): a line when it starts and when it
listens, one line per request (method, path, status, duration and request id), and the
traceback of a request that failed. Each line goes out as it is written, not when a buffer
fills, and so does what the app prints.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Python 3.8 cannot subscript dict at run time
    from dockyard_server import WsgiApp

HEALTH_PATH = "/_dockyard/health"

REQUEST_ID = "HTTP_X_REQUEST_ID"
"""The environ key of ``X-Request-Id``: the client's, or one made for the request."""

_GIVEN_ID = re.compile(r"[\x21-\x7e]{1,200}")
"""A client's request id is kept if it is visible ASCII without spaces, at most 200 long."""


def load(target: str) -> WsgiApp:
    """Import ``module:callable`` (``module`` alone means ``module:application``); a
    ``module:factory()`` is an app factory (Flask's ``create_app()``), called once."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    factory = attribute.endswith("()")
    found = getattr(module, attribute.removesuffix("()") or "application")
    app: WsgiApp = found() if factory else found
    return app


def with_health(app: WsgiApp) -> WsgiApp:
    """Wrap ``app`` so that the health route never reaches it."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return app(environ, start_response)

    return dispatch


def log_line(text: str) -> None:
    """Write one line to stderr, stamped with the UTC time to the millisecond.

    One write per line, so that the lines of requests running at once never mix; a log that
    cannot be written (a closed stderr) never fails a request."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{stamp}.{int(now % 1 * 1000):03d}Z {text}\n")


class _Logged:
    """The app's iterable, passed through; the access line is written when it is closed
    (after the last byte was sent), saying whether it failed on the way."""

    def __init__(self, result: Iterable[bytes], done: Callable[[bool, bool], None]) -> None:
        self._result = result
        self._items: Iterator[bytes] = iter(result)
        self._done = done
        self._sent = False
        self._failed = False

    def __iter__(self) -> _Logged:
        return self

    def __next__(self) -> bytes:
        try:
            data = next(self._items)
        except StopIteration:
            raise
        except BaseException:
            self._failed = True
            raise
        self._sent = self._sent or bool(data)
        return data

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._failed, self._sent)


def with_access_log(
    app: WsgiApp,
    log: Callable[[str], None] = log_line,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> WsgiApp:
    """Wrap ``app`` so that every request is logged in one line and carries a request id.

    The id is the client's ``X-Request-Id`` when it sent a usable one, else a new one; the
    app finds it in ``environ["HTTP_X_REQUEST_ID"]`` and the answer carries it back as
    ``X-Request-Id`` (unless the app set that header itself). A list answer is logged when
    the app returns it, a streamed one once it has been sent."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        given = environ.get(REQUEST_ID, "")
        request_id = given if _GIVEN_ID.fullmatch(given) else new_id()
        environ[REQUEST_ID] = request_id
        status = ["-"]  # the app's last word: a start_response with exc_info replaces it

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line.split(" ", 1)[0]
            if not any(name.lower() == "x-request-id" for name, _ in headers):
                headers = [*headers, ("X-Request-Id", request_id)]
            return start_response(status_line, headers, exc_info)

        def done(failed: bool, sent: bool) -> None:
            took = (time.monotonic() - started) * 1000
            said = status[0]
            if failed:  # the server answers 500 if nothing was sent, else cuts the answer
                said = f"{said} (cut short)" if sent else "500"
            path = str(environ.get("RAW_URI") or environ.get("PATH_INFO", "")).split("?", 1)[0]
            log(
                f"{environ.get('REQUEST_METHOD', '-')} {path} {said} {took:.1f} ms "
                f"request_id={request_id}"
            )

        try:
            result = app(environ, start)
        except BaseException:
            done(True, False)
            raise
        if isinstance(result, (list, tuple)):
            done(False, False)  # the whole answer is made; the server sends it at once
            return result
        return _Logged(result, done)

    return logged


VALOHAI_METADATA_ENV = "DOCKYARD_VALOHAI_METADATA"
"""The environment variable a driver passes Valohai's runtime document in (JSON)."""

VALOHAI_METADATA_FILE = "valohai-metadata.json"


def write_valohai_metadata(environ: Mapping[str, str], directory: str) -> None:
    """Write ``valohai-metadata.json`` in ``directory`` from the environment, if it carries
    one: endpoints written for Valohai read it at start. A file that cannot be written is
    said in the log, not fatal (a base image's user may not own the working directory)."""
    document = environ.get(VALOHAI_METADATA_ENV)
    if not document:
        return
    path = os.path.join(directory, VALOHAI_METADATA_FILE)
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(document if document.endswith("\n") else document + "\n")
    except OSError as exc:
        log_line(f"dockyard_runner: could not write {path}: {exc}")


def main(argv: list[str]) -> int:
    """``python -m dockyard_runner module:callable``."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m dockyard_runner module:callable\n")
        return 2
    # A replica's output goes to a file or a pipe, where Python would hold it back until a
    # buffer fills: `dockyard logs --follow` would show nothing for a long while.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    sys.path.insert(0, os.getcwd())
    import dockyard_server

    write_valohai_metadata(os.environ, os.getcwd())

    log_line(f"dockyard_runner: loading {argv[1]} (pid {os.getpid()})")
    app = with_health(with_access_log(load(argv[1])))
    log_line(f"dockyard_runner: serving {argv[1]}")
    return dockyard_server.serve(
        app,
        # Inside a container the server must be reachable from outside its namespace.
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104
        port=int(os.environ.get("PORT", "8000")),
        max_requests=int(os.environ.get("DOCKYARD_WSGI_THREADS", "4")),
        log=log_line,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
