"""Signing in with an API token, and out.

The token is sent once, in the sign-in form's body; the session keeps only its hash
(:mod:`dockyard_api.sessions`). The form is protected against login CSRF by a random value
in a cookie that it must echo (a page of another site can read neither).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from dockyard_api.accounts import hash_token
from dockyard_api.auth import principal_for_hash
from dockyard_api.console.rendering import ConsoleRoute, render
from dockyard_api.console.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SignedIn,
    check_csrf,
    cookie_options,
)
from dockyard_api.context import ApiContext, get_context
from dockyard_common import get_logger

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]


def _sign_in_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", status=status, csrf=nonce, error=error)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, **cookie_options(request))  # type: ignore[arg-type]
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    """The sign-in form."""
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    context: Context,
    token: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Start a session for a valid token, then go to the console's start page."""
    check_csrf(request.cookies.get(LOGIN_COOKIE, ""), csrf)
    token_hash = hash_token(token.strip())
    principal = await principal_for_hash(context, token_hash)
    if principal is None:
        log.info("console.sign_in.refused")
        return _sign_in_page(request, 401, "that token is unknown, revoked or expired")
    session_id, _ = await context.console_sessions.start(token_hash)
    log.info("console.signed_in", owner=principal.owner, token_id=principal.token_id)
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(context.settings.console_session_ttl_s),
        **cookie_options(request),  # type: ignore[arg-type]
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request,
    session: SignedIn,
    context: Context,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """End the session."""
    check_csrf(session.csrf, csrf)
    await context.console_sessions.end(session.id)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response
