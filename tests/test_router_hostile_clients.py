"""Hostile and odd clients against a running router process, over raw sockets.

Slow request heads get 408, connections past the cap 503, and what the router will not pass
on (CONNECT, protocol upgrades, malformed bodies, bad Host headers, HTTP/2 on an HTTP/1
port) a 4xx/5xx problem+json instead of a silently closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from dockyard_platform.servers import start_redis
from tests.harness.fixtures import Names
from tests.harness.router import (
    RouterProcess,
    private_record,
    raw_exchange,
    record_version,
    replica,
    start_router,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "hostile-test-admin"  # noqa: S105 - a test's own router
HEAD_TIMEOUT_S = 1.0
CONNECTIONS = 40


@dataclass(frozen=True)
class Routed:
    """A router process, and the path prefix of a version it serves (answering ``one``)."""

    router: RouterProcess
    prefix: str


@pytest.fixture(scope="module")
async def routed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Routed]:
    """One router for the module: each test leaves it as it found it."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    names = Names(owner=f"o{secrets.token_hex(4)}", project="demo", deployment="web")
    redis = start_redis(tmp_path / "redis")
    try:
        async with private_record(tmp_path / "nats") as record:
            with replica(tmp_path, "one") as upstream:
                await record_version(record.js, names, "v1", [upstream])
                env = {
                    "DOCKYARD_NATS_URL": record.url,
                    "DOCKYARD_REDIS_URL": redis.url,
                    "DOCKYARD_ADMIN_TOKEN": ADMIN_TOKEN,
                    "DOCKYARD_CLIENT_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
                    "DOCKYARD_CLIENT_CONNECTIONS": str(CONNECTIONS),
                }
                with start_router(env, tmp_path / "router.log") as router:
                    await router.until_serving()
                    yield Routed(
                        router, f"/{names.owner}/{names.project}/{names.deployment}/v1/predict"
                    )
    finally:
        redis.stop()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def problem_of(answer: bytes) -> dict[str, object]:
    """The problem+json body of a whole answer (the router's own are one per connection)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/problem+json\r\n" in head.lower(), head
    problem: dict[str, object] = json.loads(body)
    return problem


async def slow_head(port: int, every_s: float) -> bytes:
    """A request head sent a byte every ``every_s`` (never finished): what the router
    answered within 10 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: r\r\nX-Slow: ")

    async def dribble() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(every_s)
                writer.write(b"a")
                await writer.drain()

    dribbling = asyncio.create_task(dribble())
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        dribbling.cancel()
        writer.close()


async def test_a_slow_request_head_gets_408_counted_from_its_first_byte(routed: Routed) -> None:
    port = routed.router.port
    # Each sends a byte five times a second: never idle, never done.
    slow = [asyncio.create_task(slow_head(port, every_s=0.2)) for _ in range(20)]
    silent = await asyncio.open_connection("127.0.0.1", port)  # sends nothing at all
    async with httpx.AsyncClient(base_url=routed.router.url, timeout=5) as client:
        fine = await client.get(f"{routed.prefix}/")  # others are served meanwhile
    assert (fine.status_code, fine.text) == (200, "one")
    # Within slow_head's 10 s: the head timeout (1 s here), not the idle one (75 s), which
    # bytes every 0.2 s would never reach.
    for answer in await asyncio.gather(*slow):
        assert status_of(answer) == 408, answer
        assert problem_of(answer)["type"] == "https://dockyard.dev/problems/request-timeout"
    assert status_of(await asyncio.wait_for(silent[0].read(), 10)) == 408
    silent[1].close()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One answer with a Content-Length, on a kept-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_connections_past_the_cap_are_answered_503_at_once(routed: Routed) -> None:
    port = routed.router.port
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    request = f"GET {routed.prefix}/ HTTP/1.1\r\nHost: r\r\n\r\n".encode()
    try:
        for _ in range(CONNECTIONS):  # each served once, then kept alive and idle
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            assert status_of(await read_answer(reader)) == 200
            held.append((reader, writer))
        refused = await raw_exchange(port, request)  # answered at once, not held for a slot
        assert status_of(refused) == 503
        assert b"\r\nRetry-After: 1\r\n" in refused
        assert problem_of(refused)["type"] == "https://dockyard.dev/problems/too-many-connections"
        for reader, writer in held:  # the connections under the cap are still served
            writer.write(request)
            assert status_of(await read_answer(reader)) == 200
    finally:
        for _, writer in held:
            writer.close()
    deadline = time.monotonic() + 5
    while (
        status_of(answer := await raw_exchange(port, request[:-2] + b"Connection: close\r\n\r\n"))
        != 200
    ):
        assert time.monotonic() < deadline, answer
    async with httpx.AsyncClient(base_url=routed.router.url) as client:
        metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    refusals = next(
        line
        for line in metrics.text.splitlines()
        if line.startswith("dockyard_router_connections_refused_total ")
    )
    assert float(refusals.split()[1]) >= 1


HOST = b"Host: router.example:8081\r\n"
CLOSE = b"Connection: close\r\n"


HOSTILE_REQUESTS: list[tuple[str, bytes, int, str]] = [
    (
        "connect",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        501,
        "not-implemented",
    ),
    (
        "websocket",
        b"GET %s/ HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        501,
        "not-implemented",
    ),
    (
        "h2c-upgrade",
        b"GET %s/ HTTP/1.1\r\n" + HOST + b"Connection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        501,
        "not-implemented",
    ),
    (
        "http2-request-line",
        b"GET %s/ HTTP/2.0\r\n" + HOST + b"\r\n",
        505,
        "http-version-not-supported",
    ),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad-request"),
    (
        "chunk-size-not-hex",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        400,
        "bad-request",
    ),
    (
        "chunk-size-overflow",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\n",
        400,
        "bad-request",
    ),
    (
        "chunk-longer-than-said",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n",
        400,
        "bad-request",
    ),
    (
        "transfer-coding-not-chunked",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        501,
        "not-implemented",
    ),
    (
        "length-and-chunked",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"
        b"\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        "bad-request",
    ),
    (
        "two-lengths",
        b"POST %s/ HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
        "bad-request",
    ),
    ("no-host", b"GET %s/ HTTP/1.1\r\n" + CLOSE + b"\r\n", 400, "bad-request"),
    ("two-hosts", b"GET %s/ HTTP/1.1\r\n" + HOST + HOST + CLOSE + b"\r\n", 400, "bad-request"),
    (
        "host-with-path",
        b"GET %s/ HTTP/1.1\r\nHost: evil.example/x\r\n" + CLOSE + b"\r\n",
        400,
        "bad-request",
    ),
    (
        "host-with-userinfo",
        b"GET %s/ HTTP/1.1\r\nHost: user@evil.example\r\n" + CLOSE + b"\r\n",
        400,
        "bad-request",
    ),
    ("host-with-space", b"GET %s/ HTTP/1.1\r\nHost: a b\r\n" + CLOSE + b"\r\n", 400, "bad-request"),
    ("empty-host", b"GET %s/ HTTP/1.1\r\nHost:\r\n" + CLOSE + b"\r\n", 400, "bad-request"),
    ("no-host-on-ops", b"GET /_ops/regions HTTP/1.1\r\n" + CLOSE + b"\r\n", 400, "bad-request"),
]
"""Requests the router refuses: (name, the request as sent, its status, its problem type);
``%s`` stands for the path of a routed version."""


HOSTILE_INPUTS: list[tuple[str, str, str]] = [
    (
        f"router: {name}",
        repr(request.replace(b"%s", b"/o/p/d/v1/predict")),
        f"{status} {slug}, then the connection closes",
    )
    for name, request, status, slug in HOSTILE_REQUESTS
] + [
    (
        "router: slow request heads",
        "20 connections sending a header byte every 0.2 s, and one sending nothing",
        "408 request-timeout at the head timeout (counted from the first byte); others served",
    ),
    (
        "router: connections past the cap",
        "one connection more than DOCKYARD_CLIENT_CONNECTIONS",
        "503 too-many-connections with Retry-After: 1, at once; the others still served",
    ),
    (
        "router: chunked body malformed midway",
        "a good chunk, then a chunk size 'zz' after the request went upstream",
        "400 bad-request naming the malformed body",
    ),
    (
        "router: a refusal pipelined after a request",
        "GET then CONNECT in one write",
        "200 for the GET, then 501 for the CONNECT, in order",
    ),
    (
        "router: /metrics without the admin token",
        "GET /metrics, with no token and with a wrong one",
        "401 problem+json; 200 only with the platform admin token",
    ),
]
"""Every hostile request these tests send, as docs/reliability.md lists them."""


@pytest.mark.parametrize(
    ("request_head", "status", "slug"),
    [row[1:] for row in HOSTILE_REQUESTS],
    ids=[row[0] for row in HOSTILE_REQUESTS],
)
async def test_requests_the_router_will_not_pass_on_get_a_problem_then_the_close(
    routed: Routed, request_head: bytes, status: int, slug: str
) -> None:
    if b"%s" in request_head:
        request_head = request_head.replace(b"%s", routed.prefix.encode(), 1)
    answer = await raw_exchange(routed.router.port, request_head)
    assert status_of(answer) == status, answer
    assert problem_of(answer)["type"] == f"https://dockyard.dev/problems/{slug}"
    assert b"\r\nConnection: close\r\n" in answer  # and read() returned: it closed


async def test_a_chunked_body_that_turns_malformed_midway_is_answered_400(
    routed: Routed,
) -> None:
    head = (
        f"POST {routed.prefix}/read-body HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    # The head and a good chunk first: the request is on its way upstream (which reads the
    # whole body before it answers) when the body breaks.
    answer = await raw_exchange(
        routed.router.port, head.encode() + b"5\r\nhello\r\n", b"zz\r\n", pause_s=0.3
    )
    assert status_of(answer) == 400, answer
    assert "malformed request body" in str(problem_of(answer)["detail"])


async def test_a_refusal_pipelined_after_a_request_comes_after_its_answer(
    routed: Routed,
) -> None:
    answer = await raw_exchange(
        routed.router.port,
        f"GET {routed.prefix}/ HTTP/1.1\r\nHost: r\r\n\r\n".encode()
        + b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    first, _, second = answer.partition(b"HTTP/1.1 501 ")
    assert status_of(first) == 200 and first.endswith(b"\r\n\r\none"), answer
    assert b"CONNECT is not supported" in second


async def test_a_valid_host_reaches_the_upstream_and_http_1_0_needs_none(routed: Routed) -> None:
    port = routed.router.port
    with_host = await raw_exchange(
        port, f"GET {routed.prefix}/forwarded-host HTTP/1.1\r\n".encode() + HOST + CLOSE + b"\r\n"
    )
    assert status_of(with_host) == 200 and with_host.endswith(b"\r\n\r\nrouter.example:8081")
    ipv6 = await raw_exchange(
        port, f"GET {routed.prefix}/ HTTP/1.1\r\nHost: [::1]:8081\r\n".encode() + CLOSE + b"\r\n"
    )
    assert status_of(ipv6) == 200
    old = await raw_exchange(port, f"GET {routed.prefix}/ HTTP/1.0\r\n\r\n".encode())
    assert status_of(old) == 200 and old.endswith(b"\r\n\r\none")


async def test_metrics_answer_only_to_the_admin_token(routed: Routed) -> None:
    async with httpx.AsyncClient(base_url=routed.router.url) as client:
        assert (await client.get(f"{routed.prefix}/")).status_code == 200
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.headers["Content-Type"].startswith("application/problem+json")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401
        admin = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 200
    assert "dockyard_router_requests_total{" in admin.text
