"""What the fault suite measures for each fault: the JSON it writes and the report reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FaultResult", "SuiteResults"]


class FaultResult(BaseModel):
    """One process killed with SIGKILL under load, and what followed."""

    model_config = ConfigDict(extra="forbid")

    fault: str
    """The process killed: api, builder, scheduler, router, webhooks, nats, redis."""
    window_s: float
    """How long the load ran: before the kill, during the outage, and after."""
    reads: int
    """GET requests through the router (idempotent), answered or not."""
    read_rate: float
    reads_failed: int
    """Reads with no 200, after the one retry on a fresh connection a client may make
    for an idempotent request whose connection closed."""
    reads_retried: int
    read_errors: dict[str, int]
    slowest_read_s: float
    submissions: int
    """Versions submitted (POST, not retried) during the window."""
    acknowledged: int
    """Submissions answered 201."""
    lost: int
    """Acknowledged submissions absent afterwards."""
    duplicated: int
    """Submissions present more than once afterwards."""
    unacknowledged_stored: int
    """Submissions without a 201 (refused, cut off) that are there anyway, once."""
    built: int
    """Acknowledged submissions whose build had finished (built, ready or stopped) when the
    suite looked, a bounded wait after the fault."""
    restarted_s: float | None
    """From the kill until the launcher ran a new process of it."""
    recover_s: float | None
    """From the kill until the service worked again (None: it did not, within the bound)."""
    event_s: float | None
    """From the kill until its platform.service.restarted event was in the stream."""
    replicas_wanted: int
    replicas_running: int
    """Endpoint replica processes running once the platform settled (after a scheduler
    kill: adopted, not doubled or orphaned)."""


class SuiteResults(BaseModel):
    """One run of the fault suite."""

    model_config = ConfigDict(extra="forbid")

    started: str
    cpus: int
    faults: list[FaultResult]
