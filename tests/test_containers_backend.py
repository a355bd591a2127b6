"""The containers backend runs real servers: JetStream drops a repeated msg-id, Redis stores.

These use ``container_infrastructure()`` themselves rather than the session fixture, so they
prove the backend whichever one ``DOCKYARD_TEST_BACKEND`` picks for the rest of the session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js.api import StreamConfig

from dockyard_common.runtime import connect_nats, connect_redis
from tests.harness.containers import container_infrastructure
from tests.harness.infrastructure import Infrastructure


@pytest.fixture(scope="module")
def servers() -> Iterator[Infrastructure]:
    """NATS and Redis containers for this module; skipped with the reason if no engine answers."""
    with container_infrastructure() as infrastructure:
        yield infrastructure


@pytest.mark.docker
async def test_jetstream_in_a_container_drops_a_repeated_message_id(
    servers: Infrastructure,
) -> None:
    token = secrets.token_hex(4)
    stream, subject = f"DEDUP_{token}", f"dedup.{token}"
    client = await connect_nats(servers.nats_url, name="dockyard-test-containers")
    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        headers = {"Nats-Msg-Id": f"event-{token}"}

        first = await js.publish(subject, b"first", stream=stream, headers=headers)
        second = await js.publish(subject, b"first, again", stream=stream, headers=headers)

        assert not first.duplicate
        assert second.duplicate is True
        assert second.seq == first.seq
        info = await js.stream_info(stream)
        assert info.state.messages == 1
    finally:
        await client.close()


@pytest.mark.docker
async def test_redis_in_a_container_returns_what_was_set(servers: Infrastructure) -> None:
    key, value = f"dockyard-test:{secrets.token_hex(4)}", "stored in a container"
    client = connect_redis(servers.redis_url)
    try:
        await client.set(key, value)

        assert await client.get(key) == value
    finally:
        await client.aclose()


def test_without_an_engine_the_caller_is_skipped_naming_what_was_tried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    absent = f"unix://{tmp_path}/absent.sock"
    monkeypatch.setenv("DOCKER_HOST", absent)

    with (
        pytest.raises(pytest.skip.Exception, match=re.escape(f"DOCKER_HOST={absent}")),
        container_infrastructure(),
    ):
        pytest.fail("entered without an engine")
