"""Typed access to the state of record: resources as JSON in JetStream KV, written by CAS.

Each value is a :class:`Record`: the resource, and the events the write announces (none, or
a few :class:`Announcement`). The API's relay turns every announcing write into its
CloudEvents, so a write is never stored without its events being published, even if the
writer dies right after.

How a bucket's writes look on the wire (``$KV.<bucket>.<key>`` subjects, the operation
header of a deletion) is known here only: :func:`kv_write` reads one as a
:class:`Written`, and :func:`watch_bucket` follows a bucket in order for whoever acts on
its writes as they come (the relay, the router).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from dockyard_common.errors import Conflict, TransientError
from dockyard_common.log import get_logger
from dockyard_common.records import Announced, Announcement, Record, Stored, Written, announcements

__all__ = [
    "Announced",
    "Announcement",
    "Conflict",
    "Counter",
    "Record",
    "ResourceStore",
    "Stored",
    "Written",
    "announcements",
    "bucket_subjects",
    "kv_write",
    "watch_bucket",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
ValueT = TypeVar("ValueT")

log = get_logger(__name__)

_PARSED_CACHE = 4096
"""Parsed resources kept per store (the most recently read or written)."""
_READ_BATCH = 64


_UNAVAILABLE = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)


@contextlib.contextmanager
def _kv_unavailable_is_transient(operation: str) -> Iterator[None]:
    """NATS being away is a transient failure (503 at the API, a retry in consumers)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise TransientError(f"the state of record is unavailable ({operation}): {exc!r}") from exc


_DELETIONS = ("DEL", "PURGE")
_KV_SUBJECT_PREFIX = "$KV."


def bucket_subjects(bucket: str) -> str:
    """The subject filter of every write of ``bucket`` (in its stream ``KV_<bucket>``)."""
    return f"{_KV_SUBJECT_PREFIX}{bucket}.>"


def kv_write(message: Msg) -> Written[bytes]:
    """One write of a KV bucket as its stream delivered it: the key, the revision (the
    stream sequence) and the value stored, None for a deletion."""
    key = message.subject.removeprefix(_KV_SUBJECT_PREFIX).partition(".")[2]
    deleted = (message.headers or {}).get("KV-Operation") in _DELETIONS
    return Written(key, message.metadata.sequence.stream, None if deleted else message.data)


async def watch_bucket(
    js: JetStreamContext,
    bucket: str,
    on_write: Callable[[Written[bytes]], object],
    *,
    on_caught_up: Callable[[], object] | None = None,
) -> None:
    """Hand every write of ``bucket`` to ``on_write`` as it is stored, in revision order,
    until cancelled: each key's newest write first, then every write as it happens.
    ``on_caught_up()`` once the newest writes that were there at the start have come.

    An ordered push consumer: no acknowledgements, made again from the last revision seen
    after a reconnect, so no write is skipped; ``on_write`` runs in the subscription's
    callback, one write at a time (the path of an alias switch: no queue in between).
    """
    caught_up = on_caught_up is None
    if not caught_up and (await js.stream_info(f"KV_{bucket}")).state.messages == 0:
        caught_up = True
        on_caught_up()  # type: ignore[misc]  # checked above: not None

    async def on_message(message: Msg) -> None:
        nonlocal caught_up
        on_write(kv_write(message))
        if not caught_up and message.metadata.num_pending == 0:
            caught_up = True
            on_caught_up()  # type: ignore[misc]

    subscription = await js.subscribe(
        bucket_subjects(bucket),
        stream=f"KV_{bucket}",
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
    )
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(*_UNAVAILABLE, nats.errors.Error):
            await subscription.unsubscribe()


class ResourceStore(Generic[ModelT]):
    """One KV bucket holding one kind of resource; every write is a compare-and-set."""

    def __init__(
        self, js: JetStreamContext, bucket: str, kv: KeyValue, model: type[ModelT]
    ) -> None:
        self._js = js
        self._bucket = bucket
        self._kv = kv
        self._model = model
        # Parsed resources by key, with the revision they were parsed at: a record read again
        # unchanged (or just written here) is not parsed again. Resources are frozen models,
        # so sharing one instance is safe; a revision is unique to one write.
        self._parsed: OrderedDict[str, Stored[ModelT]] = OrderedDict()
        # Every key's latest write (revision, stored bytes) while keep_current() follows the
        # bucket; trusted by recent() from when the bucket's contents at the follow's start
        # have come until the connection it follows on goes away.
        self._current: dict[str, tuple[int, bytes]] = {}
        self._current_on: tuple[NatsClient, int] | None = None
        """The connection, and its reconnect count, of the follow that filled _current."""

    def _remember(self, key: str, stored: Stored[ModelT]) -> Stored[ModelT]:
        self._parsed[key] = stored
        self._parsed.move_to_end(key)
        if len(self._parsed) > _PARSED_CACHE:
            self._parsed.popitem(last=False)
        return stored

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, model: type[ModelT]
    ) -> ResourceStore[ModelT]:
        """Bind to an existing (provisioned) bucket."""
        return cls(js, bucket, await js.key_value(bucket), model)

    async def get(self, key: str) -> Stored[ModelT] | None:
        """The resource at ``key`` with its revision, or None when absent or deleted."""
        try:
            with _kv_unavailable_is_transient("read"):
                entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        known = self._parsed.get(key)
        if known is not None and known.revision == entry.revision:
            return known
        return self._remember(key, Stored(self.decode(entry.value), entry.revision))

    def recent(self, key: str) -> Stored[ModelT] | None:
        """What ``key`` holds as far as this process knows, without a round trip: its latest
        write followed by :meth:`keep_current`, or read or written here if that is later.
        It can be a few milliseconds behind the state of record; None when this process
        does not know the key (absent, not followed or not held, or not parsing): ask
        :meth:`get`."""
        if not self._is_current() or key not in self._current:
            return None
        revision, value = self._current[key]
        known = self._parsed.get(key)
        if known is not None and known.revision > revision:
            return known
        return self._stored(key, revision, value)

    def _is_current(self) -> bool:
        if self._current_on is None:
            return False
        nc, reconnects = self._current_on
        return nc.is_connected and nc.stats["reconnects"] == reconnects

    async def keep_current(
        self,
        nc: NatsClient,
        *,
        holds: Callable[[ModelT], bool] | None = None,
        again_after_s: float = 1.0,
    ) -> None:
        """Follow the bucket on ``nc`` for :meth:`recent`, until cancelled: every key, or
        those whose resource ``holds`` (parsed as it comes) keeps, which bounds the memory it
        takes. While the connection is away, and from its return until a new follow has
        caught up (writes made meanwhile may not have come), recent() knows nothing."""
        while True:
            reconnects = nc.stats["reconnects"]
            follow = asyncio.create_task(self._fill_current(nc, reconnects, holds))
            try:
                while not follow.done() and nc.stats["reconnects"] == reconnects:
                    await asyncio.wait({follow}, timeout=again_after_s / 2)
                if follow.done():
                    follow.result()
                    log.warning("store.follow.ended", bucket=self._bucket)
            except (TransientError, nats.errors.Error) as exc:
                log.warning("store.follow.failed", bucket=self._bucket, error=str(exc))
            finally:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
                self._current_on = None
                self._current.clear()
            await asyncio.sleep(again_after_s)

    async def _fill_current(
        self, nc: NatsClient, reconnects: int, holds: Callable[[ModelT], bool] | None
    ) -> None:
        async with contextlib.aclosing(self._follow_values()) as writes:
            async for write in writes:
                if write is None:
                    self._current_on = (nc, reconnects)
                elif write.value is not None and self._keeps(
                    write.key, write.revision, write.value, holds
                ):
                    self._current[write.key] = (write.revision, write.value)
                else:
                    self._current.pop(write.key, None)

    def _keeps(
        self, key: str, revision: int, value: bytes, holds: Callable[[ModelT], bool] | None
    ) -> bool:
        """Whether :meth:`keep_current` keeps a write: any without ``holds``; else one whose
        resource parses and ``holds`` keeps."""
        if holds is None:
            return True
        stored = self._stored(key, revision, value)
        return stored is not None and holds(stored.value)

    def _stored(self, key: str, revision: int, value: bytes) -> Stored[ModelT] | None:
        """The resource ``value`` holds at ``revision``, parsed once per revision (a write
        made or read here is not parsed again); None when it does not parse."""
        known = self._parsed.get(key)
        if known is not None and known.revision == revision:
            return known
        try:
            stored = Stored(self.decode(value), revision)
        except ValidationError:
            return None
        if known is None or known.revision < revision:
            self._remember(key, stored)  # never over a later one read or written here
        return stored

    def decode(self, value: bytes) -> ModelT:
        """The resource a stored value holds; pydantic's ValidationError if it does not parse."""
        return self._model.model_validate(Record.model_validate_json(value).resource)

    async def create(self, key: str, value: ModelT, *, announce: Announced = None) -> int:
        """Store a new resource; :class:`Conflict` if the key already holds one.

        ``announce`` is the events the write stands for (published by the relay).
        """
        try:
            with _kv_unavailable_is_transient("write"):
                revision: int = await self._kv.create(key, self._encode(value, announce))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{key} already exists") from exc
        self._remember(key, Stored(value, revision))
        return revision

    async def update(
        self, key: str, value: ModelT, revision: int, *, announce: Announced = None
    ) -> int:
        """Replace the resource read at ``revision``; :class:`Conflict` if it changed since."""
        try:
            with _kv_unavailable_is_transient("write"):
                new_revision: int = await self._kv.update(
                    key, self._encode(value, announce), last=revision
                )
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{key} changed since revision {revision}") from exc
        self._remember(key, Stored(value, new_revision))
        return new_revision

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Delete the resource (only if still at ``revision`` when given); Conflict if not."""
        try:
            with _kv_unavailable_is_transient("delete"):
                await self._kv.delete(key, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{key} changed since revision {revision}") from exc

    async def items(
        self, prefix: str = "", *, unreadable: Callable[[str, ValidationError], None] | None = None
    ) -> AsyncIterator[tuple[str, Stored[ModelT]]]:
        """Every live resource whose key starts with ``prefix``, in key order.

        A prefix ending at a key token (``acme.demo.``) is filtered by the server. A record
        that does not parse raises, unless ``unreadable`` is given: then it is told the key
        and the error, and the record is skipped (a process loading everything at start
        should not be kept from starting by one bad record).
        """

        async def read(key: str) -> Stored[ModelT] | None:
            try:
                return await self.get(key)
            except ValidationError as exc:
                if unreadable is None:
                    raise
                unreadable(key, exc)
                return None

        with _kv_unavailable_is_transient("list"):
            keys = await self._keys(f"{prefix}>" if prefix.endswith(".") else ">")
        wanted = [key for key in sorted(keys) if key.startswith(prefix)]
        # Reads go out in concurrent batches: one round trip per key made a pass over
        # thousands of resources wait on the network thousands of times.
        for start in range(0, len(wanted), _READ_BATCH):
            batch = wanted[start : start + _READ_BATCH]
            for key, stored in zip(
                batch, await asyncio.gather(*(read(key) for key in batch)), strict=True
            ):
                if stored is not None:
                    yield key, stored

    async def follow(
        self, *, unreadable: Callable[[str, ValidationError], None] | None = None
    ) -> AsyncGenerator[Written[ModelT] | None, None]:
        """What every key holds now, then each write as it is stored, in order, for as long
        as the caller iterates; None once what was stored when it began has all been given
        (at once for an empty bucket). A record that does not parse raises, unless
        ``unreadable`` is given: then it is told, and the write is given as None."""
        async with contextlib.aclosing(self._follow_values()) as writes:
            async for write in writes:
                if write is None or write.value is None:
                    yield write if write is None else Written(write.key, write.revision, None)
                    continue
                try:
                    value = self.decode(write.value)
                except ValidationError as exc:
                    if unreadable is None:
                        raise
                    unreadable(write.key, exc)
                    value = None
                yield Written(write.key, write.revision, value)

    async def _follow_values(self) -> AsyncGenerator[Written[bytes] | None, None]:
        """:meth:`follow`, with each value as stored (None: deleted), not parsed."""
        with _kv_unavailable_is_transient("watch"):
            # Caught up once the write that was last when following began has come: nats-py's
            # own end-of-snapshot marker can come early under concurrent writes (nats.py #842).
            state = (await self._js.stream_info(f"KV_{self._bucket}")).state
            watcher = await self._kv.watch(">")
        last = state.last_seq if state.messages else 0
        try:
            if not last:
                yield None
            async for entry in watcher:
                if entry is None:
                    continue
                value = entry.value if entry.operation is None else None
                yield Written(entry.key, entry.revision, value)
                if last and entry.revision >= last:
                    last = 0
                    yield None
        finally:
            with contextlib.suppress(*_UNAVAILABLE):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _keys(self, key_filter: str) -> list[str]:
        # The bucket's stream lists its subjects (one per key, deleted ones included: get()
        # skips those). No consumer is made: nats-py's keys() makes one per call, which
        # outlives the call and hits the server's consumer limit under many listings.
        prefix = f"$KV.{self._bucket}."
        info = await self._js.stream_info(
            f"KV_{self._bucket}", subjects_filter=f"{prefix}{key_filter}"
        )
        return [subject.removeprefix(prefix) for subject in (info.state.subjects or {})]

    @staticmethod
    def _encode(value: BaseModel, announce: Announced) -> bytes:
        record = Record(
            announce=announcements(announce),
            resource=value.model_dump(mode="json", by_alias=True),
        )
        return record.model_dump_json().encode()


class Counter:
    """Monotonic counters in a KV bucket, advanced by compare-and-set (safe across processes).

    Within a process, callers of one key queue on a lock and the last value and revision
    are kept, so a contended key costs one write per number instead of read-retry storms;
    other processes still win or lose on the compare-and-set.
    """

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, tuple[int, int]] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> Counter:
        """Bind to an existing (provisioned) bucket."""
        return cls(await js.key_value(bucket))

    async def next(self, key: str, attempts: int = 50) -> int:
        """Advance the counter at ``key`` and return its new value (the first is 1)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            for _ in range(attempts):
                with _kv_unavailable_is_transient("counter"):
                    known = self._last.get(key) or await self._read(key)
                    try:
                        if known is None:
                            revision = await self._kv.create(key, b"1")
                            value = 1
                        else:
                            value = known[0] + 1
                            revision = await self._kv.update(
                                key, str(value).encode(), last=known[1]
                            )
                    except nats.js.errors.KeyWrongLastSequenceError:
                        self._last.pop(key, None)  # another process moved it: read again
                        continue
                    self._last[key] = (value, revision)
                    return value
        raise Conflict(f"counter {key} is contended; try again")

    async def _read(self, key: str) -> tuple[int, int] | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return int(entry.value or b"0"), int(entry.revision or 0)
