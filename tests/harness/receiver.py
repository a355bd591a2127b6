"""A real HTTP webhook receiver on loopback, scripted per test, recording every request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from dockyard_platform.servers import free_port

__all__ = ["Delivery", "Receiver", "receiver", "wait_for_log"]


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        """The CloudEvent it carried."""
        event: dict[str, Any] = json.loads(self.body)
        return event


Answer = Callable[["Delivery"], int]
"""Decides the status to answer a request (given with ``answered=0``)."""


@dataclass
class Receiver:
    """Where it listens, how it answers and what it got."""

    url: str
    answer: Answer = lambda _: 204
    got: list[Delivery] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def acknowledged(self) -> list[Delivery]:
        """The requests answered with a 2xx."""
        return [d for d in self.got if 200 <= d.answered < 300]

    async def wait_for(
        self, what: str, done: Callable[[list[Delivery]], bool], within_s: float = 15.0
    ) -> list[Delivery]:
        """Wait until ``done(got)``; fail saying what was awaited and what arrived."""
        deadline = time.monotonic() + within_s
        while not done(self.got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [
                    (d.answered, d.event.get("type"), d.headers.get("webhook-id")) for d in self.got
                ]
                raise AssertionError(f"waited {within_s} s for {what}; the receiver got {seen}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue
        return self.got


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1 (the test platforms allow that address for webhooks)."""
    port = free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        status = state.answer(Delivery(headers, body, 0))
        state.got.append(Delivery(headers, body, status))
        state.changed.set()
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


async def wait_for_log(
    api: httpx.AsyncClient,
    log_path: str,
    what: str,
    done: Callable[[list[dict[str, Any]]], bool],
    within_s: float = 10.0,
) -> list[dict[str, Any]]:
    """Wait until the delivery log at ``log_path`` satisfies ``done`` (the delivering process
    writes it just after the receiver answers); fail showing the last log seen."""
    deadline = time.monotonic() + within_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = await api.get(log_path)
        assert response.status_code == 200, response.text
        records = response.json()["items"]
        if done(records):
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited {within_s} s for a log with {what}; last seen: {records}")
