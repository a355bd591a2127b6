"""The router's inputs: everything its tables (:mod:`dockyard_router.tables`) hold comes
through one of these feeds, and nothing else writes them.

| input | module | comes from | ordered by |
|---|---|---|---|
| versions: routes, status | `versions` | KV `dockyard_versions`, by the API | record revision |
| aliases | `aliases` | KV `dockyard_aliases`, by the API | record revision |
| drained regions | `regions` | KV `dockyard_regions`, by the API | record revision |
| a copy of all three | `mirror` | Redis, by one worker per router | record revision |

Every router process follows the three buckets itself (:mod:`.record`): no event, queue or
pub/sub channel between the record and the tables, and a write older than what a table
holds changes nothing. A router never acts on a service's report, only on what the record
holds. The mirror is read only by a process that starts while NATS does not answer. To
add an input: a :class:`~.feed.Feed` in a module of its own, named in
:data:`.record.FEEDS`, and a row here.

One output rides on the same NATS connection: the request metrics feed (:mod:`.traffic`),
what this process served, published once a second on the traffic stream.
"""

from __future__ import annotations

from dockyard_router.feeds.feed import Feed
from dockyard_router.feeds.mirror import Mirror
from dockyard_router.feeds.record import FEEDS, RecordFeeds, follow_record

__all__ = ["FEEDS", "Feed", "Mirror", "RecordFeeds", "follow_record"]
