"""A target whose scheduler does not answer gets an error entry, never a failed call."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import cast

from nats.aio.client import Client as NatsClient

from dockyard_api.context import ApiContext
from dockyard_api.endpoint_logs import _ask
from dockyard_common.logs import LogsRequest


async def test_a_silent_scheduler_becomes_an_error_entry_within_the_timeout(
    nats_client: NatsClient,
) -> None:
    context = SimpleNamespace(settings=SimpleNamespace(logs_timeout_s=0.3), nats=nats_client)
    request = LogsRequest(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target="nobody-runs-this",
    )
    started = time.monotonic()
    reply = await _ask(cast(ApiContext, context), request)
    assert time.monotonic() - started < 2.0
    assert reply.replicas == []
    # No scheduler at all: nobody answered; the session's scheduler, if one runs, says
    # the target is unknown. Either way the entry carries the reason.
    assert reply.error is not None and "nobody-runs-this" in reply.error
