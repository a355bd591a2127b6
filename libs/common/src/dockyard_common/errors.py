"""The error tree shared by every service; each error carries its retry decision.

DockyardError
├── TransientError      -- retry later (``delay`` seconds): a server down, a timeout
└── PermanentError      -- retrying cannot help: report ``*.failed`` with the reason
    └── InvalidInput    -- the user's input is wrong; the message says how to fix it

Conflict (apart: a compare-and-set write lost; the writer reads again and decides anew)
"""

from __future__ import annotations

__all__ = ["Conflict", "DockyardError", "InvalidInput", "PermanentError", "TransientError"]


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""


class TransientError(DockyardError):
    """A failure that may pass: the work is retried after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 2.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(DockyardError):
    """A failure that retrying cannot fix: the work is reported failed with this message."""


class InvalidInput(PermanentError):
    """The user's input is wrong; the message says what and how to fix it."""


class Conflict(Exception):
    """A compare-and-set write lost: the key exists, or changed since ``revision`` was read."""
