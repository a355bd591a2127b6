"""The console's safety: who is signed in, CSRF checks, and the headers every console
answer carries (a strict Content-Security-Policy: no inline script or style, nothing from
another origin, no framing).

A page or form of the console runs as the principal of the session's token, with the API's
own authorisation (:func:`dockyard_api.auth.authorize`): the console hides what a role may
not do, and the same checks as the JSON API refuse it anyway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard_api.accounts import Principal
from dockyard_api.auth import principal_for_hash
from dockyard_api.context import ApiContext, get_context
from dockyard_api.sessions import ConsoleSession

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "ConsoleHeaders",
    "CsrfRefused",
    "SignInNeeded",
    "SignedIn",
    "check_csrf",
    "cookie_options",
    "signed_in",
]

SESSION_COOKIE = "dockyard_session"
LOGIN_COOKIE = "dockyard_login"
"""Before sign-in: a random value the sign-in form must echo (double submit)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class ConsoleHeaders:
    """Adds the console's security headers to every answer under ``/console``; pages are
    never cached (they show what a token may see)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/console"):
            await self.app(scope, receive, send)
            return
        static = str(scope["path"]).startswith("/console/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class SignInNeeded(Exception):
    """No live session: the console answers with the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing form without this session's CSRF token."""


def cookie_options(request: Request) -> dict[str, object]:
    """HttpOnly, SameSite=Strict, scoped to the console; Secure when served over https,
    directly or behind a proxy that ended TLS and says so (``X-Forwarded-Proto``: a client
    that forges it only keeps its own cookie off plain http)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https" or forwarded == "https",
        "path": "/console",
    }


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its principal (checked again on this request) and session."""

    id: str
    principal: Principal
    session: ConsoleSession

    @property
    def csrf(self) -> str:
        """What this session's forms carry."""
        return self.session.csrf


async def signed_in(
    request: Request, context: Annotated[ApiContext, Depends(get_context)]
) -> Session:
    """The request's session, its token still valid; :class:`SignInNeeded` otherwise."""
    session_id = request.cookies.get(SESSION_COOKIE)
    store = context.console_sessions
    if not session_id:
        raise SignInNeeded
    session = await store.find(session_id)
    if session is None:
        raise SignInNeeded
    principal = await principal_for_hash(context, session.token_hash)
    if principal is None:
        await store.end(session_id)
        raise SignInNeeded
    return Session(id=session_id, principal=principal, session=session)


SignedIn = Annotated[Session, Depends(signed_in)]


def check_csrf(expected: str, given: str | None) -> None:
    """Refuse a form whose CSRF token is missing or not the expected one."""
    if not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise CsrfRefused
