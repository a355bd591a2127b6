"""The subscriptions a dispatcher matches events against, held in memory.

Listing a project's subscriptions in the bucket for every event cost a request, plus one
per subscription, for every event on the platform. A dispatcher follows the bucket instead
and says in its heartbeats how far it has applied it; the API answers a new subscription
only once every live dispatcher holds it, so an event published after the answer is matched
against it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pydantic import ValidationError

from dockyard_api.webhooks.models import Webhook
from dockyard_common import Written, get_logger
from dockyard_common.runtime import ResourceStore

__all__ = ["Subscriptions"]

log = get_logger(__name__)


class Subscriptions:
    """Every subscription, by project, as the bucket holds it."""

    def __init__(self) -> None:
        self._by_project: dict[str, dict[str, Webhook]] = {}
        self.loaded = asyncio.Event()
        """Set once every subscription stored when following began is held."""

    def of_project(self, owner: str, project: str) -> list[Webhook]:
        """The project's subscriptions."""
        return list(self._by_project.get(f"{owner}.{project}", {}).values())

    def apply(self, written: Written[Webhook]) -> None:
        """Take one write of the bucket (keys are ``owner.project.id``)."""
        project, _, webhook_id = written.key.rpartition(".")
        if written.value is not None:
            self._by_project.setdefault(project, {})[webhook_id] = written.value
            return
        held = self._by_project.get(project, {})
        held.pop(webhook_id, None)
        if not held:
            self._by_project.pop(project, None)

    async def follow(
        self, store: ResourceStore[Webhook], applied_through: Callable[[int], object]
    ) -> None:
        """Apply every write of ``store``'s bucket, until cancelled; ``applied_through(n)``
        once the subscriptions are loaded and after each write since."""

        def unreadable(key: str, exc: ValidationError) -> None:
            # Nothing later makes it readable: it is left out rather than stalling every event.
            log.error("webhook.record.unreadable", key=key, error=str(exc))

        through = 0
        async with contextlib.aclosing(store.follow(unreadable=unreadable)) as writes:
            async for written in writes:
                if written is not None:
                    self.apply(written)
                    through = max(through, written.revision)
                else:
                    self.loaded.set()
                if self.loaded.is_set():
                    applied_through(through)
        # A dispatcher going on with subscriptions no longer followed would miss new ones.
        raise RuntimeError("the webhook subscriptions stopped being followed")
