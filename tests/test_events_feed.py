"""The live event feed: filtered by owner and type, resumable without loss or repeats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import put_deployment
from tests.harness.sse import SseEvent, sse_events

pytestmark = pytest.mark.e2e


async def collect(
    stream: AsyncIterator[SseEvent], count: int, within_s: float = 10.0
) -> list[SseEvent]:
    """The next ``count`` events; fails naming how many arrived."""
    got: list[SseEvent] = []

    async def read() -> None:
        async for event in stream:
            got.append(event)
            if len(got) == count:
                return

    try:
        await asyncio.wait_for(read(), within_s)
    except TimeoutError:
        raise AssertionError(f"expected {count} events within {within_s} s, got {got}") from None
    return got


async def move(api: httpx.AsyncClient, names: Names, targets: list[str]) -> None:
    response = await api.put(
        f"/v1/projects/{names.owner}/{names.project}/deployments/{names.deployment}",
        json={"targets": targets},
    )
    assert response.status_code == 200, response.text


PLACEMENTS = [["local-us"], ["local-eu"], ["local-eu", "local-us"]] * 2


async def test_a_client_that_reconnects_with_last_event_id_misses_and_repeats_nothing(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    await put_deployment(api, names, ["local-eu"])
    feed = f"/v1/events?owner={names.owner}&types=deployment.*"
    async with httpx.AsyncClient(
        base_url=platform.api_url, headers=api.headers, timeout=httpx.Timeout(10, read=None)
    ) as client:
        async with client.stream("GET", feed + "&since=0") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = sse_events(response)
            first = await collect(stream, 1)  # the deployment's creation
            for targets in PLACEMENTS[:3]:
                await move(api, names, targets)
            before = first + await collect(stream, 3)
        # Disconnected: three more changes happen meanwhile.
        for targets in PLACEMENTS[3:]:
            await move(api, names, targets)
        resume = {"Last-Event-ID": str(before[-1].id)}
        async with client.stream("GET", feed, headers=resume) as response:
            after = await collect(sse_events(response), 3)

    seen = before + after
    assert [e.event for e in seen] == ["deployment.changed"] * 7
    ids = [e.id for e in seen]
    assert ids == sorted(set(ids)), f"repeated or out of order: {ids}"
    placements = [e.data["data"]["targets"] for e in seen]
    assert placements == [["local-eu"], *PLACEMENTS], placements


async def test_the_feed_shows_only_the_callers_owner_and_the_asked_types(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names
) -> None:
    other = Names(owner=f"{names.owner}x", project="demo", deployment="web")
    await put_deployment(api, names, ["local-eu"])
    await put_deployment(api, other, ["local-eu"])
    token = (await api.post(f"/v1/owners/{names.owner}/tokens", json={"role": "viewer"})).json()
    viewer = {"Authorization": f"Bearer {token['token']}"}
    async with httpx.AsyncClient(
        base_url=platform.api_url, headers=viewer, timeout=httpx.Timeout(10, read=None)
    ) as client:
        refused = await client.get(f"/v1/events?owner={other.owner}")
        assert refused.status_code == 404
        async with client.stream("GET", "/v1/events?types=deployment.changed&since=0") as response:
            await move(api, other, ["local-us"])
            await move(api, names, ["local-us"])
            events = await collect(sse_events(response), 2)
    assert {e.data["subject"] for e in events} == {f"{names.owner}.demo.web"}


async def test_the_event_catalogue_is_published_as_asyncapi(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/asyncapi")).json()
    assert document["asyncapi"].startswith("3.")
    channel = document["channels"]["version_created"]
    assert channel["address"] == "dockyard.events.{owner}.{project}.{deployment}.version.created"
    assert "Version" in document["components"]["schemas"]
