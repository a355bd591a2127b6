"""Standard Webhooks signatures: secrets, the signed content, signing and verifying.

A receiver recomputes ``base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))``
with the key the ``whsec_`` secret encodes and compares it with each ``v1,`` entry of the
``webhook-signature`` header. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "SECRET_PREFIX",
    "delivery_id",
    "new_secret",
    "sign",
    "signature_matches",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks marker, not a secret


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one delivery attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_matches(
    secret: str, message_id: str, timestamp: int, body: bytes, header: str
) -> bool:
    """Whether any ``v1`` signature in ``header`` (space-separated) signs this delivery."""
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split())


def delivery_id(webhook_id: str, event_id: str) -> str:
    """The ``webhook-id`` of an event's delivery to one subscription: the same on every retry."""
    return "msg_" + hashlib.sha256(f"{webhook_id}\n{event_id}".encode()).hexdigest()[:32]
