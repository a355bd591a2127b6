"""Owners, projects, API tokens and who may do what: the models and pure decisions.

Tokens are random secrets shown once; only their sha256 is stored. A token belongs to
one owner and has one role. The bootstrap admin token (from settings) is the platform
admin: it may act for every owner and is the only one that manages targets and owners.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from dockyard_common.models import utcnow
from dockyard_common.names import OwnerName, ProjectName

__all__ = [
    "TOKEN_PREFIX",
    "ApiToken",
    "Owner",
    "Principal",
    "Project",
    "Role",
    "hash_token",
    "new_token",
]

TOKEN_PREFIX = "dy_"  # noqa: S105 - a public marker, not a secret


class Role(StrEnum):
    """What a token may do: each role includes the ones before it."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the order viewer < deployer < admin."""
        return list(Role).index(self)


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Owner(_Stored):
    """A user or organisation: owns projects and API tokens."""

    name: OwnerName
    created_at: datetime = Field(default_factory=utcnow)


class Project(_Stored):
    """``owner/project``: holds deployments and blobs."""

    owner: OwnerName
    name: ProjectName
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(_Stored):
    """A stored token: its public id, owner and role; never the secret itself."""

    id: str
    owner: OwnerName
    role: Role
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        """Whether the token has passed its expiry."""
        return self.expires_at is not None and now >= self.expires_at


def hash_token(secret: str) -> str:
    """The stored form of a token: sha256 hex of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh secret and its id (the first 16 hex digits of its hash)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_token(secret)[:16]


class Principal(BaseModel):
    """Who is calling: the platform admin (``owner`` None) or one owner's token."""

    model_config = ConfigDict(frozen=True)

    owner: str | None
    role: Role
    token_id: str | None = None

    @property
    def is_platform_admin(self) -> bool:
        """The bootstrap admin token: every owner, targets and owners too."""
        return self.owner is None

    def sees(self, owner: str) -> bool:
        """Whether objects of ``owner`` exist for this caller (others' are 404, not 403)."""
        return self.is_platform_admin or self.owner == owner

    def may(self, owner: str, role: Role) -> bool:
        """Whether the caller may act with ``role`` on ``owner``'s objects."""
        return self.sees(owner) and self.role.rank >= role.rank
