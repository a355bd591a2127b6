"""Bearer-token authentication. Until owners and their tokens exist, only the admin token."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem

__all__ = ["AdminAuth", "require_admin"]

_bearer = HTTPBearer(auto_error=False)


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> None:
    """Refuse the request with 401 unless it carries the admin bearer token."""
    if credentials is None:
        raise Problem(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
    expected = context.settings.admin_token.get_secret_value().encode()
    if not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise Problem(401, "unauthenticated", "the bearer token is not valid")


AdminAuth = Depends(require_admin)
