"""What every feed of the tables is: a bucket of the record, how its writes read and where
they go in the table and in the Redis mirror. Each input declares one :class:`Feed`
(:mod:`.versions`, :mod:`.aliases`, :mod:`.regions`); :mod:`.record` follows them all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from dockyard_router.tables import RouteTable

__all__ = ["Feed"]

T = TypeVar("T", bound=BaseModel)


class _Envelope(BaseModel, Generic[T]):
    """A KV value (a :class:`dockyard_common.Record`) read for routing: its resource only."""

    model_config = ConfigDict(extra="ignore")

    resource: T


@dataclass(frozen=True, kw_only=True)
class Feed(Generic[T]):
    """One input of the tables from one bucket of the state of record."""

    name: str
    """What it feeds (``versions``): in logs, and its part of the mirror's key names."""
    bucket: str
    model: type[T]
    """What routing reads of a record of the bucket (:mod:`dockyard_router.routed`)."""
    table_key: Callable[[str], str]
    """A KV key as the tables name it."""
    put: Callable[[RouteTable, str, int, T | None], bool]
    """Take a write (key, revision, value or None for a deletion); True if it changed the
    table (:meth:`RouteTable.put_version` and its kin)."""
    held: Callable[[RouteTable], list[tuple[str, int, T]]]
    """What the table holds of this feed: (key, revision, value) each."""
    keep: Callable[[RouteTable, Collection[str]], None]
    """Forget what the table holds of this feed but for the keys given."""
    _envelope: type[_Envelope[T]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_envelope", _Envelope[self.model])  # type: ignore[name-defined]

    def read(self, value: bytes) -> T:
        """What routing takes of a stored record; pydantic's ValidationError when it is not
        one (parsed once, skipping what routing does not use)."""
        return self._envelope.model_validate_json(value).resource

    @property
    def mirror_hash(self) -> str:
        """The Redis hash the mirror keeps this feed's entries in (their revisions in
        ``<hash>:revisions``)."""
        return f"dockyard:mirror:{self.name}"
