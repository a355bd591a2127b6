"""The shape of every list answer: ``{"items": [...], "next": ...}``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel

__all__ = ["BadCursor", "Page", "decode_cursor", "encode_cursor", "page_after"]

ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    """One page of a list; ``next`` is the cursor of the following page, None on the last."""

    items: list[ItemT]
    next: str | None = None


class BadCursor(ValueError):
    """A cursor that this API did not hand out."""


def encode_cursor(position: list[str]) -> str:
    """An opaque cursor for a position in a sorted listing."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[str]:
    """The position a cursor stands for; :class:`BadCursor` if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"cursor {cursor!r} is not valid") from exc
    if not isinstance(position, list) or not all(isinstance(p, str) for p in position):
        raise BadCursor(f"cursor {cursor!r} is not valid")
    return position


def page_after(
    items: Sequence[ItemT],
    position_of: Callable[[ItemT], list[str]],
    cursor: str | None,
    limit: int,
) -> Page[ItemT]:
    """One page of ``items`` (sorted by ``position_of``, descending) after ``cursor``."""
    start = 0
    if cursor is not None:
        after = decode_cursor(cursor)
        start = next((i for i, item in enumerate(items) if position_of(item) < after), len(items))
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return Page(items=chunk, next=encode_cursor(position_of(chunk[-1])) if more and chunk else None)
