"""Services act on facts of the record, never on another service's report.

A builder's report of a build the record does not hold (a version it does not have, or one
it has stopped) makes no fact, so the scheduler runs nothing of it; the router, which follows
the record, routes nothing to it (tests/test_router_feeds.py forges the readiness side).
Before reports went through the API, the builder's ``version.built`` went straight to the
scheduler, which then ran a version the record did not hold.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dockyard_common import EventType, Version, VersionStatus
from dockyard_common.runtime import EventPublisher
from tests.harness.fixtures import Names, RunningPlatform
from tests.harness.flows import deploy_ready, project_path, put_deployment, wait_for_version

pytestmark = pytest.mark.e2e


async def test_a_build_the_record_does_not_hold_is_never_run_nor_routed(
    api: httpx.AsyncClient,
    names: Names,
    js: JetStreamContext,
    nats_client: NatsClient,
    platform: RunningPlatform,
) -> None:
    await put_deployment(api, names, ["local-eu"])
    real = await deploy_ready(api, names, "v1")
    versions = f"{project_path(names)}/deployments/{names.deployment}/versions"
    assert (await api.delete(f"{versions}/v1")).status_code == 202
    await wait_for_version(api, names, "v1", "stopped")
    # What the builder would report of builds the record does not hold: v1's own build,
    # image and all, for a version the record has not got, and for v1 now it is stopped.
    built = Version.model_validate({**real, "endpoint_states": []}).model_copy(
        update={"status": VersionStatus.BUILT}
    )
    forgeries = [built.model_copy(update={"name": "ghost"}), built]
    observed: list[dict[str, Any]] = []

    async def heard(message: Msg) -> None:
        observed.append(json.loads(message.data)["data"])

    scope = f"{names.owner}.{names.project}.{names.deployment}"
    watched = await nats_client.subscribe(
        f"dockyard.reports.{scope}.{EventType.SCHEDULER_ENDPOINT_OBSERVED}", cb=heard
    )
    try:
        publisher = EventPublisher(js, source="tests/forged-builder")
        for forged in forgeries:
            await publisher.publish(
                EventType.BUILDER_BUILD_SUCCEEDED,
                forged,
                resource_key=f"{scope}.{forged.name}",
                revision="forged",
            )
        # The reports are folded, and the facts acted on, in order: once a version
        # submitted after the forged report is ready, the report had every chance.
        await deploy_ready(api, names, "v2")
    finally:
        await watched.unsubscribe()
    assert [s["version"] for s in observed if s["version"] != "v2"] == []
    assert (await api.get(f"{versions}/ghost")).status_code == 404
    assert (await api.get(f"{versions}/v1")).json()["status"] == "stopped"
    async with httpx.AsyncClient(base_url=platform.router_url, timeout=5) as router:
        base = f"/{names.owner}/{names.project}/{names.deployment}"
        assert (await router.get(f"{base}/ghost/predict/")).status_code == 404
        assert (await router.get(f"{base}/v1/predict/")).status_code == 410
        assert (await router.get(f"{base}/v2/predict/")).status_code == 200
