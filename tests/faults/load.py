"""Bounded load for the fault suite: reads through the router, version submissions to the API.

Reads are GETs, idempotent: a read whose connection closed under it (a router process that
drained it) is sent once more on a fresh connection, as RFC 9110 lets a client do, and
counted as retried; a read with no 200 after that counts as failed. Submissions are POSTs,
never retried: each carries a marker of its own so that afterwards the suite can count how
many times each one was stored.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import httpx

__all__ = ["ReadLoad", "Submission", "SubmissionLoad"]

_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class ReadLoad:
    """``workers`` clients each reading ``url`` with a pause between reads, until stopped."""

    url: str
    workers: int = 4
    pause_s: float = 0.02
    sent: int = 0
    failed: int = 0
    retried: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set."""
        await asyncio.gather(*(self._client(stop) for _ in range(self.workers)))

    async def _client(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            while not stop.is_set():
                started = time.monotonic()
                self.sent += 1
                error = await self._read(session)
                if error == "connection":
                    self.retried += 1
                    error = await self._read(session)
                if error is not None:
                    self.failed += 1
                    self.errors[error] += 1
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                await asyncio.sleep(self.pause_s)

    async def _read(self, session: aiohttp.ClientSession) -> str | None:
        """None for a 200; else what went wrong (``connection`` may be retried)."""
        try:
            async with session.get(self.url) as response:
                await response.read()
                return None if response.status == 200 else f"HTTP {response.status}"
        except aiohttp.ClientConnectionError:
            return "connection"
        except TimeoutError:
            return "timeout"


@dataclass(frozen=True)
class Submission:
    """One version submitted: its marker, and the answer (None: no answer came)."""

    marker: str
    status: int | None
    error: str | None


@dataclass
class SubmissionLoad:
    """Versions submitted one after another, ``every_s`` apart, until stopped."""

    api: httpx.AsyncClient
    versions_path: str
    code_blob: str
    prefix: str
    every_s: float = 0.5
    submissions: list[Submission] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Submit until ``stop`` is set."""
        while not stop.is_set():
            marker = f"{self.prefix}-{secrets.token_hex(4)}"
            body = {
                "code": {"blob": self.code_blob},
                "endpoints": [{"name": "predict", "wsgi": "app:app"}],
                "env": {"SUBMISSION": marker},
            }
            try:
                response = await self.api.post(self.versions_path, json=body)
                submission = Submission(marker, response.status_code, None)
            except httpx.TransportError as exc:
                submission = Submission(marker, None, type(exc).__name__)
            self.submissions.append(submission)
            await asyncio.sleep(self.every_s)

    @property
    def acknowledged(self) -> list[str]:
        """The markers of submissions answered 201."""
        return [s.marker for s in self.submissions if s.status == 201]
