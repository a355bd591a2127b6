"""Owners and their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard_api.accounts import ApiToken, Owner, Role, hash_token, new_token
from dockyard_api.auth import OwnerAdmin, PlatformAdmin, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import OwnerPath
from dockyard_common import Conflict, OwnerName, utcnow

__all__ = ["router"]

router = APIRouter(prefix="/v1/owners", tags=["owners"])

Context = Annotated[ApiContext, Depends(get_context)]


class OwnerIn(BaseModel):
    """``POST /v1/owners``."""

    model_config = ConfigDict(extra="forbid")

    name: OwnerName


class TokenIn(BaseModel):
    """``POST /v1/owners/{owner}/tokens``."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    description: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = Field(default=None, description="When the token stops working.")


class CreatedToken(BaseModel):
    """A new token: the secret is shown in this answer only, never again."""

    token: str
    id: str
    owner: str
    role: Role
    description: str | None
    created_at: datetime
    expires_at: datetime | None


@router.post("", status_code=201)
async def create_owner(body: OwnerIn, caller: PlatformAdmin, context: Context) -> Owner:
    """Create an owner (platform admin only)."""
    owner = Owner(name=body.name)
    try:
        await context.owners.create(body.name, owner)
    except Conflict:
        raise Problem(409, "owner-exists", f"owner {body.name!r} already exists") from None
    return owner


@router.get("/{owner}")
async def get_owner(owner: OwnerPath, caller: Viewer, context: Context) -> Owner:
    """One owner."""
    missing = f"owner {owner!r} does not exist"
    stored = await context.owners.get(owner)
    if stored is None:
        raise Problem(404, "not-found", missing)
    return stored.value


@router.post("/{owner}/tokens", status_code=201)
async def create_token(
    owner: OwnerPath, body: TokenIn, caller: OwnerAdmin, context: Context
) -> CreatedToken:
    """Issue a token for the owner; its secret is in this answer only."""
    missing = f"owner {owner!r} does not exist"
    if await context.owners.get(owner) is None:
        raise Problem(404, "not-found", missing)
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise Problem(422, "invalid-input", "expires_at needs a timezone, e.g. 2027-01-01T00:00Z")
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise Problem(422, "invalid-input", "expires_at is in the past")
    secret, token_id = new_token()
    token = ApiToken(
        id=token_id,
        owner=owner,
        role=body.role,
        description=body.description,
        expires_at=body.expires_at,
    )
    await context.tokens.create(hash_token(secret), token)
    return CreatedToken(token=secret, **token.model_dump())


@router.get("/{owner}/tokens")
async def list_tokens(owner: OwnerPath, caller: OwnerAdmin, context: Context) -> Page[ApiToken]:
    """The owner's tokens (ids and roles; secrets are never shown again)."""
    tokens = [s.value async for _, s in context.tokens.items() if s.value.owner == owner]
    tokens.sort(key=lambda t: t.created_at)
    return Page(items=tokens)


@router.delete("/{owner}/tokens/{token_id}", status_code=204)
async def revoke_token(
    owner: OwnerPath,
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
    caller: OwnerAdmin,
    context: Context,
) -> Response:
    """Revoke a token at once."""
    missing = f"token {token_id!r} of {owner!r} does not exist"
    async for key, stored in context.tokens.items():
        if stored.value.owner == owner and stored.value.id == token_id:
            await context.tokens.delete(key)
            return Response(status_code=204)
    raise Problem(404, "not-found", missing)
