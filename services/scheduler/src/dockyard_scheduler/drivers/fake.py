"""A driver for unit tests only: it runs nothing and remembers what it was asked.

Shipped beside the :class:`~dockyard_scheduler.drivers.Driver` protocol so that the reconcile
loop's decisions can be tested without a target, never as the proof that a workload runs (the
drivers' own tests and the end-to-end tests are). Nothing in the scheduler imports it: an
import-linter contract keeps it that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dockyard_common import DockyardError
from dockyard_scheduler.desired import Workload

__all__ = ["FakeDriver"]


class FakeDriver:
    """Holds workloads in a dict; records every ``ensure`` and ``remove`` it is asked for.

    ``running`` are keys found running at start (as after a scheduler restart: their
    :class:`Workload` is unknown until a pass asks for it); ``refuse`` maps a workload key to
    the error ``ensure`` raises for it.
    """

    def __init__(
        self,
        *,
        running: Iterable[str] = (),
        refuse: Mapping[str, DockyardError] | None = None,
    ) -> None:
        self.workloads: dict[str, Workload | None] = dict.fromkeys(running)
        self.refuse: dict[str, DockyardError] = dict(refuse or {})
        self.ensured: list[str] = []
        """Every key ``ensure`` was called with, in order (refused ones too)."""
        self.removed: list[str] = []
        """Every key ``remove`` was called with, in order."""
        self.closed = False

    async def ensure(self, workload: Workload) -> bool:
        """Record the workload as running; False when it already ran as asked."""
        self.ensured.append(workload.key)
        refused = self.refuse.get(workload.key)
        if refused is not None:
            raise refused
        unchanged = self.workloads.get(workload.key) == workload
        self.workloads[workload.key] = workload
        return not unchanged

    async def remove(self, key: str) -> bool:
        """Forget a workload; False when there was none."""
        self.removed.append(key)
        if key not in self.workloads:
            return False
        del self.workloads[key]
        return True

    def workload_keys(self) -> set[str]:
        """The keys of the workloads it holds."""
        return set(self.workloads)

    def workload(self, key: str) -> Workload | None:
        """The workload under ``key``; None for one found running and not asked for since."""
        return self.workloads.get(key)

    def reap_leftovers(self) -> int:
        """Nothing is left over from an earlier scheduler here."""
        return 0

    async def close(self) -> None:
        """Remember that it was closed."""
        self.closed = True
