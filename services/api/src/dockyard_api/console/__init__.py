"""The web console at ``/console``: watch, test and steer deployments in a browser.

Server-rendered pages (Jinja2, every value escaped) with one small script of our own for
live updates (Server-Sent Events from the event stream) and confirmations; no CDN, no build
step. Signed in with an API token held by a server-side session (HttpOnly, SameSite=Strict
cookie); every form carries the session's CSRF token; a strict Content-Security-Policy.
It acts through the API's own workflows and authorisation, never through HTTP to itself.

Modules: ``security`` (sessions, CSRF, headers), ``rendering`` (templates, error pages),
``sign_in``, ``pages`` (GET), ``live`` (SSE), ``actions`` (POST), ``reading`` and ``feeds``
(what pages read), ``views``, ``charts`` and ``tester`` (pure or narrow helpers).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from dockyard_api.console import actions, live, pages, sign_in
from dockyard_api.console.security import ConsoleHeaders

__all__ = ["ConsoleHeaders", "router", "static_files"]

router = APIRouter()
for part in (sign_in.router, pages.router, live.router, actions.router):
    router.include_router(part)

static_files = StaticFiles(directory=Path(__file__).parent / "static")
"""The console's script and stylesheet, mounted at ``/console/static``."""
