"""What a value of the state of record holds (a resource, and the events its write
announces), and what a reader gets back (:class:`Stored`, :class:`Written`).

Pure data, no I/O: :mod:`dockyard_common.runtime.state` reads and writes these in JetStream KV, and
the decisions that choose what a write announces (the API's status fold) build them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Announced", "Announcement", "Record", "Stored", "Written", "announcements"]

ModelT = TypeVar("ModelT", bound=BaseModel)
ValueT = TypeVar("ValueT")


class Announcement(BaseModel):
    """An event a write stands for: its type, and for an endpoint fact (whose data is one
    :class:`~dockyard_common.models.EndpointState` of the version written) which one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    endpoint: str | None = None
    target: str | None = None


Announced = str | Announcement | Sequence[str | Announcement] | None
"""What a writer says a write announces: nothing, one event type, or several."""


def announcements(announce: Announced) -> list[Announcement]:
    """``announce`` as the list a :class:`Record` stores. Pure."""
    if announce is None:
        return []
    if isinstance(announce, str | Announcement):
        announce = [announce]
    return [a if isinstance(a, Announcement) else Announcement(type=a) for a in announce]


class Record(BaseModel):
    """What a KV value holds: a resource and the events its write announces, in order."""

    model_config = ConfigDict(frozen=True)

    announce: list[Announcement] = Field(default_factory=list)
    resource: dict[str, Any]

    @field_validator("announce", mode="before")
    @classmethod
    def _one_type_as_written_before(cls, value: object) -> object:
        # Records written before a write could announce several events hold one type, or null.
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return items  # not ours to fix: validation says what is wrong
        return [{"type": item} if isinstance(item, str) else item for item in items]

    @staticmethod
    def announces_nothing(value: bytes) -> bool:
        """True when a stored value surely announces no event, seen without parsing it
        (``announce`` is written first): the relay reads every write of its buckets, and
        most version writes (an alias switch's hold, say) announce nothing."""
        return value.startswith(_SILENT_RECORDS)


_SILENT_RECORDS = (b'{"announce":[],', b'{"announce":null,')


@dataclass(frozen=True)
class Stored(Generic[ModelT]):
    """A resource with the KV revision it was read at (the ETag of the API)."""

    value: ModelT
    revision: int


@dataclass(frozen=True)
class Written(Generic[ValueT]):
    """One write of a followed bucket: what ``key`` holds from ``revision`` on (None: it
    was deleted, or holds a record that does not parse)."""

    key: str
    revision: int
    value: ValueT | None
