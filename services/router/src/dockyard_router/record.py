"""The route and alias tables from the state of record (JetStream KV).

Redis holds derived state: a Redis restarted without persistence comes back empty, and
the tables are then rebuilt from the versions' endpoint states and the aliases.

Every router process also watches the alias bucket itself: an alias write reaches each
process's table straight from the KV stream (≈0.5 ms), instead of through the API's relay,
the event stream, one process's consumer, Redis and its pub/sub (≈5 ms). One process of
the router also writes what its watch applies to Redis's alias table, which a process
loads with the routes (:meth:`.RouteStore.save_aliases`); nothing is published, since
every process has the change from this watch already.

The watch is an ordered consumer of its own rather than ``ResourceStore.follow``: it is on
the path of every switch, and applies each write in the subscription's callback, parsed
once without the alias's history, instead of through nats-py's watcher queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockyard_common import Alias, AliasTarget, TransientError, Version, get_logger
from dockyard_common.runtime import ResourceStore
from dockyard_common.subjects import ALIASES_BUCKET, VERSIONS_BUCKET
from dockyard_router.tables import RouteTable, route_from_state

__all__ = ["table_from_record", "watch_alias_record"]

log = get_logger(__name__)

_DELETIONS = ("DEL", "PURGE")


class _RoutedAlias(BaseModel):
    """What routing needs of an alias: not its history (up to twenty changes, parsed for
    nothing on the path of every switch)."""

    model_config = ConfigDict(extra="ignore")

    owner: str
    project: str
    deployment: str
    name: str
    target: AliasTarget
    regions: dict[str, AliasTarget] = Field(default_factory=dict)
    updated_at: datetime


class _AliasWrite(BaseModel):
    """An alias bucket value (a :class:`Record`), read for routing."""

    model_config = ConfigDict(extra="ignore")

    resource: _RoutedAlias


async def table_from_record(js: JetStreamContext) -> RouteTable:
    """Every route (serving or not) and alias the state of record knows, as a fresh table
    (a record that does not parse is logged and left out, as the alias watch does);
    :class:`TransientError` when NATS does not answer."""

    def unreadable(key: str, exc: ValidationError) -> None:
        log.error("routes.record.unreadable", key=key, error=str(exc))

    table = RouteTable()
    try:
        versions = await ResourceStore.open(js, VERSIONS_BUCKET, Version)
        async for _, stored in versions.items(unreadable=unreadable):
            for state in stored.value.endpoint_states:
                table.put(route_from_state(state))
        aliases = await ResourceStore.open(js, ALIASES_BUCKET, Alias)
        async for _, alias in aliases.items(unreadable=unreadable):
            table.put_alias(alias.value, alias.revision)
    except (nats.errors.Error, TimeoutError) as exc:
        raise TransientError(f"the state of record is unavailable: {exc!r}") from exc
    return table


async def watch_alias_record(
    js: JetStreamContext,
    apply: Callable[[Alias, int], object],
    applied_through: Callable[[int], object],
) -> None:
    """Hand every alias write to ``apply`` (alias, KV revision) as it is stored, until
    cancelled: the newest value of each alias first, then each write as it happens. After
    each, ``applied_through(revision)``: the stream comes in order, so every write up to it
    is applied (or superseded by a later write of the same alias)."""

    async def on_write(message: Msg) -> None:
        revision = message.metadata.sequence.stream
        if (message.headers or {}).get("KV-Operation") not in _DELETIONS:
            try:
                routed = _AliasWrite.model_validate_json(message.data).resource
                apply(Alias.model_validate(routed.model_dump()), revision)
            except ValidationError as exc:
                # Nothing later can make it readable: waiting on it would only stall switches.
                log.error("routes.alias_record.unreadable", subject=message.subject, error=str(exc))
        applied_through(revision)

    # An ordered push consumer: no acks, re-created from the last sequence seen after a
    # reconnect, so no write is skipped.
    subscription = await js.subscribe(
        f"$KV.{ALIASES_BUCKET}.>",
        stream=f"KV_{ALIASES_BUCKET}",
        cb=on_write,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await subscription.unsubscribe()
