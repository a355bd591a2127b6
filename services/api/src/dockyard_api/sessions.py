"""The console's sign-in sessions, kept in a JetStream KV bucket of their own.

The browser holds only a random session id (an HttpOnly, SameSite=Strict cookie). The
bucket is keyed by that id's sha256, so reading the bucket gives no usable cookie, and it
holds the sha256 of the API token signed in with, never the token: every request checks
that hash against the tokens again (:func:`dockyard_api.auth.principal_for_hash`), so a
revoked or expired token ends its sessions at once. Each session carries its own CSRF
token (the synchronizer pattern). Sessions expire by the bucket's TTL.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

__all__ = ["SESSIONS_BUCKET", "ConsoleSession", "SessionStore"]

SESSIONS_BUCKET = "dockyard_console_sessions"


class ConsoleSession(BaseModel):
    """What a signed-in browser's session holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_hash: str
    """sha256 hex of the API token signed in with."""
    csrf: str
    """The token every state-changing form of this session must send back."""


@dataclass(frozen=True)
class SessionStore:
    """Create, find and end console sessions."""

    kv: KeyValue

    @classmethod
    async def open(cls, js: JetStreamContext, ttl_s: float) -> SessionStore:
        """The bucket, created when missing; its TTL is the longest a session lives."""
        config = KeyValueConfig(
            bucket=SESSIONS_BUCKET, history=1, ttl=ttl_s, storage=StorageType.FILE
        )
        try:
            kv = await js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            kv = await js.key_value(SESSIONS_BUCKET)
        return cls(kv)

    async def start(self, token_hash: str) -> tuple[str, ConsoleSession]:
        """A new session for the token: the id for the cookie, and the session."""
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(token_hash=token_hash, csrf=secrets.token_urlsafe(32))
        await self.kv.put(_key(session_id), session.model_dump_json().encode())
        return session_id, session

    async def find(self, session_id: str) -> ConsoleSession | None:
        """The live session of a cookie's id; None when unknown, ended or expired."""
        if not 20 <= len(session_id) <= 100:
            return None
        try:
            entry = await self.kv.get(_key(session_id))
        except nats.js.errors.NotFoundError:  # never written, purged or expired
            return None
        if entry.value is None:
            return None
        return ConsoleSession.model_validate_json(entry.value)

    async def end(self, session_id: str) -> None:
        """Sign out: the id is no longer a session."""
        if 20 <= len(session_id) <= 100:
            await self.kv.purge(_key(session_id))


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
