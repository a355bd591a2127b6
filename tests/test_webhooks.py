"""Webhooks end to end: a real receiver on loopback, the platform's own delivering process.

The test platform allows 127.0.0.1 as a receiver and retries after 50 ms, doubling up to
0.5 s (``WEBHOOK_TEST_SETTINGS``), so retries take milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from dockyard_common import ProcessHeartbeat
from dockyard_common.subjects import WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import ensure_project
from tests.harness.receiver import Delivery, Receiver, receiver, wait_for_log

pytestmark = pytest.mark.e2e

EXAMPLE_RECEIVER = Path(__file__).parents[1] / "examples" / "subscribers" / "webhook_receiver.py"


def load_example() -> ModuleType:
    """The example receiver of the docs, loaded from its file (it is not a package)."""
    spec = importlib.util.spec_from_file_location("webhook_receiver", EXAMPLE_RECEIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def webhooks_path(names: Names) -> str:
    return f"/v1/projects/{names.owner}/{names.project}/webhooks"


async def subscribe(api: httpx.AsyncClient, names: Names, url: str, **body: Any) -> dict[str, Any]:
    response = await api.post(webhooks_path(names), json={"url": url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def move(api: httpx.AsyncClient, names: Names, deployment: str, targets: list[str]) -> int:
    """Place a deployment (one deployment.changed event each time); the HTTP status."""
    path = f"/v1/projects/{names.owner}/{names.project}/deployments/{deployment}"
    response = await api.put(path, json={"targets": targets})
    assert response.status_code in (200, 201), response.text
    return response.status_code


def of(deployment: str) -> Any:
    return lambda d: d.event["data"]["name"] == deployment


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as running:
        yield running


async def test_a_delivery_is_signed_and_the_example_receiver_verifies_it(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, hook: Receiver
) -> None:
    await ensure_project(api, names)
    created = await subscribe(api, names, hook.url, event_types=["deployment.*"])
    assert created["secret"].startswith("whsec_")
    shown = await api.get(f"{webhooks_path(names)}/{created['id']}")
    listed = await api.get(webhooks_path(names))
    assert "secret" not in shown.json(), "the secret is shown only at creation"
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]
    assert "secret" not in listed.json()["items"][0]

    await move(api, names, names.deployment, ["local-eu"])
    [delivery] = await hook.wait_for("one delivery", lambda got: len(got) == 1)
    example = load_example()
    assert example.verify(created["secret"], delivery.headers, delivery.body)
    assert not example.verify(created["secret"], delivery.headers, delivery.body + b" ")
    other_secret = "whsec_" + "A" * 43 + "="
    assert not example.verify(other_secret, delivery.headers, delivery.body)
    assert delivery.event["type"] == "deployment.changed"
    assert delivery.event["data"]["targets"] == ["local-eu"]
    assert delivery.headers["content-type"] == "application/cloudevents+json"


async def test_a_receiver_failing_three_times_gets_the_event_acknowledged_once_after_four_attempts(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, hook: Receiver
) -> None:
    hook.answer = lambda _: 500 if len(hook.got) < 3 else 204
    await ensure_project(api, names)
    created = await subscribe(api, names, hook.url, event_types=["deployment.changed"])
    await move(api, names, names.deployment, ["local-eu"])

    await hook.wait_for("four attempts", lambda got: len(got) == 4)
    assert [d.answered for d in hook.got] == [500, 500, 500, 204]
    assert len({d.headers["webhook-id"] for d in hook.got}) == 1, "retries share the webhook-id"
    log_url = f"{webhooks_path(names)}/{created['id']}/deliveries"
    [record] = await wait_for_log(
        api, log_url, "the delivery", lambda log: [r["status"] for r in log] == ["delivered"]
    )
    assert record["attempts"] == 4
    assert record["response_status"] == 204
    assert record["latency_ms"] is not None
    assert record["delivery_id"] == hook.got[0].headers["webhook-id"]
    assert len(hook.acknowledged()) == 1


async def test_events_of_a_deployment_arrive_in_order_and_a_failing_one_holds_up_no_other(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, hook: Receiver
) -> None:
    placements = [["local-eu"], ["local-us"], ["local-eu", "local-us"], ["local-us"]]

    def answer(delivery: Delivery) -> int:
        # Deployment a's first event fails until b's events have all arrived.
        b_done = len([d for d in hook.acknowledged() if of("b")(d)]) == len(placements)
        return 503 if of("a")(delivery) and not b_done else 204

    hook.answer = answer
    await ensure_project(api, names)
    await subscribe(api, names, hook.url, event_types=["deployment.*"])
    for targets in placements:
        await move(api, names, "a", targets)
    for targets in placements:
        await move(api, names, "b", targets)

    def done(got: list[Delivery]) -> bool:
        return len(hook.acknowledged()) == 2 * len(placements)

    await hook.wait_for("every event of a and b", done)
    refused = [d for d in hook.got if d.answered >= 300]
    assert refused and all(of("a")(d) for d in refused), "only a's deliveries were refused"
    for deployment in ("a", "b"):
        acknowledged = [d.event for d in hook.acknowledged() if of(deployment)(d)]
        assert [e["data"]["targets"] for e in acknowledged] == placements, deployment
        revisions = [int(e["resourcerevision"]) for e in acknowledged]
        assert revisions == sorted(revisions), f"{deployment}'s events arrived out of order"
        attempted = [d.event["id"] for d in hook.got if of(deployment)(d)]
        first_seen = list(dict.fromkeys(attempted))
        assert first_seen == [e["id"] for e in acknowledged], "a later event overtook a retry"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://127.0.0.2:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "ftp://example.org/hook",
    ],
)
async def test_a_url_on_a_private_or_local_address_is_refused_at_creation(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, url: str
) -> None:
    await ensure_project(api, names)
    response = await api.post(webhooks_path(names), json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("unsafe-url"), response.text
    assert (await api.get(webhooks_path(names))).json()["items"] == []


async def test_a_test_event_is_delivered_and_logged_and_a_deleted_webhook_gets_nothing(
    api: httpx.AsyncClient, platform: RunningPlatform, names: Names, hook: Receiver
) -> None:
    # No deployment yet: the test event is the only one the subscription can get.
    await ensure_project(api, names)
    created = await subscribe(api, names, hook.url)
    path = f"{webhooks_path(names)}/{created['id']}"
    sent = await api.post(f"{path}/test")
    assert sent.status_code == 202, sent.text
    [delivery] = await hook.wait_for("the test event", lambda got: len(got) == 1)
    assert delivery.event["type"] == "webhook.test"
    assert delivery.headers["webhook-id"] == sent.json()["delivery_id"]
    [record] = await wait_for_log(
        api, f"{path}/deliveries", "the test event", lambda log: len(log) == 1
    )
    assert (record["status"], record["attempts"], record["deployment"]) == ("delivered", 1, None)

    assert (await api.delete(path)).status_code == 204
    assert (await api.get(path)).status_code == 404
    await move(api, names, names.deployment, ["local-us"])
    # A second subscription that does get the event proves the first one was passed over.
    async with receiver() as witness:
        await subscribe(api, names, witness.url)
        await move(api, names, names.deployment, ["local-eu"])
        await witness.wait_for(
            "the witness's delivery of the second placement",
            lambda got: any(d.event["data"]["targets"] == ["local-eu"] for d in got),
        )
    assert len(hook.got) == 1, "a deleted subscription got a delivery"


async def test_a_new_webhook_answers_once_every_dispatcher_holds_it_or_names_the_laggard(
    api: httpx.AsyncClient,
    platform: RunningPlatform,
    names: Names,
    nats_client: NatsClient,
    hook: Receiver,
) -> None:
    await ensure_project(api, names)
    held = await api.post(webhooks_path(names), json={"url": hook.url})
    assert held.status_code == 201, held.text
    assert int(held.headers["X-Dockyard-Dispatchers"]) >= 1, "no dispatcher was waited for"
    assert "X-Dockyard-Lagging" not in held.headers, held.headers

    # A dispatcher that beats but never applies anything: the answer waits for it, then
    # names it (the subscription is stored all the same).
    stuck = ProcessHeartbeat(process=f"stuck-{names.owner}", applied_through=0)
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            await nats_client.publish(
                WEBHOOK_DISPATCHER_HEARTBEAT_SUBJECT, stuck.model_dump_json().encode()
            )
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat())
    created = [held.json()["id"]]
    try:
        deadline = time.monotonic() + 10
        while True:  # until the API has heard it beat
            started = time.monotonic()
            lagging = await api.post(webhooks_path(names), json={"url": hook.url})
            took = time.monotonic() - started
            assert lagging.status_code == 201, lagging.text
            created.append(lagging.json()["id"])
            if "X-Dockyard-Lagging" in lagging.headers:
                break
            assert time.monotonic() < deadline, "the API never heard the stuck dispatcher"
    finally:
        stop.set()
        await beating
    assert lagging.headers["X-Dockyard-Lagging"] == stuck.process
    assert took >= 2.0
    listed = (await api.get(webhooks_path(names))).json()["items"]
    assert sorted(w["id"] for w in listed) == sorted(created)
    # Once it stops beating it is gone, and subscriptions answer without waiting for it.
    deadline = time.monotonic() + 10
    while (
        "X-Dockyard-Lagging"
        in (await api.post(webhooks_path(names), json={"url": hook.url})).headers
    ):
        assert time.monotonic() < deadline, "a dispatcher that stopped beating was never dropped"
