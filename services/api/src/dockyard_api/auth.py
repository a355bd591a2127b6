"""Bearer-token authentication and per-owner authorisation, checked on every route.

A caller sees only its own owner's objects: anything else answers 404 exactly as a
missing object does, so a token learns nothing about other owners. Within its owner a
token is refused with 403 when its role is too low for the action.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dockyard_api.accounts import Principal, Role, hash_token
from dockyard_api.context import ApiContext, get_context
from dockyard_api.problems import Problem
from dockyard_common import utcnow

__all__ = [
    "Caller",
    "Deployer",
    "OwnerAdmin",
    "PlatformAdmin",
    "Viewer",
    "access",
    "authenticate",
    "authorize",
    "principal_for_hash",
    "require_platform_admin",
]

_bearer = HTTPBearer(auto_error=False, description="An API token, or the admin token.")


async def authenticate(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> Principal:
    """The caller behind the bearer token; 401 when there is none or it is not valid."""
    if credentials is None:
        raise Problem(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
    principal = await principal_for_hash(context, hash_token(credentials.credentials))
    if principal is None:
        raise Problem(401, "unauthenticated", "the token is unknown, revoked or expired")
    return principal


async def principal_for_hash(context: ApiContext, token_hash: str) -> Principal | None:
    """Who holds the token whose sha256 is ``token_hash``; None when it is unknown, revoked
    or expired. By hash so that the console's sessions need not keep the secret itself."""
    admin = hash_token(context.settings.admin_token.get_secret_value())
    if secrets.compare_digest(token_hash.encode(), admin.encode()):
        return Principal(owner=None, role=Role.ADMIN)
    stored = await context.tokens.get(token_hash)
    if stored is None or stored.value.expired(utcnow()):
        return None
    token = stored.value
    return Principal(owner=token.owner, role=token.role, token_id=token.id)


Caller = Annotated[Principal, Depends(authenticate)]


def authorize(caller: Principal, owner: str, role: Role, missing: str) -> None:
    """Let the caller act with ``role`` on ``owner``'s objects, or answer 404/403.

    ``missing`` is the 404 detail, the same words a really missing object gets.
    """
    if not caller.sees(owner):
        raise Problem(404, "not-found", missing)
    if not caller.may(owner, role):
        raise Problem(
            403, "forbidden", f"a {caller.role.value} token may not do this; it needs {role.value}"
        )


def require_platform_admin(caller: Principal) -> None:
    """Only the bootstrap admin token manages owners and targets."""
    if not caller.is_platform_admin:
        raise Problem(403, "forbidden", "only the platform admin token may do this")


def access(role: Role) -> DependsParam:
    """Dependency of an owner-scoped route: the caller, if it may act there with ``role``.

    Runs before the body is read or validated, so a caller without access learns nothing
    from validation errors either.
    """

    async def check(request: Request, caller: Caller) -> Principal:
        owner = str(request.path_params["owner"])
        authorize(caller, owner, role, f"{request.url.path} does not exist")
        return caller

    dependency: DependsParam = Depends(check)
    return dependency


async def _platform_admin(caller: Caller) -> Principal:
    require_platform_admin(caller)
    return caller


PlatformAdmin = Annotated[Principal, Depends(_platform_admin)]
"""The caller, if it holds the platform admin token; 403 otherwise."""

Viewer = Annotated[Principal, access(Role.VIEWER)]
"""A caller that may read the owner's objects."""
Deployer = Annotated[Principal, access(Role.DEPLOYER)]
"""A caller that may submit versions and move aliases in the owner's projects."""
OwnerAdmin = Annotated[Principal, access(Role.ADMIN)]
"""A caller that may manage the owner's tokens and delete its projects."""
