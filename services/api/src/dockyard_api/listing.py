"""The shape of every list answer: ``{"items": [...], "next": ...}``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

__all__ = ["Page"]

ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    """One page of a list; ``next`` is the cursor of the following page, None on the last."""

    items: list[ItemT]
    next: str | None = None
