"""The data plane's HTTP/1.1 handling, over real loopback sockets.

An upstream written here answers in the shapes real servers use (length, chunked, until
close, no body) and echoes what it received; the router's front and proxy run in the
test's event loop in front of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from dockyard_common.models import VersionStatus, WorkloadState
from dockyard_router.front import FrontConnection, sweep_connections
from dockyard_router.metrics import RouterMetrics
from dockyard_router.proxy import Proxy
from dockyard_router.routed import RoutedEndpoint, RoutedVersion
from dockyard_router.settings import RouterSettings
from dockyard_router.tables import RouteTable

PREFIX = "/acme/demo/web/v1/predict"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and de-chunked body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return head, body
    length = 0
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer by path, keep-alive unless the answer ends with the connection."""
    try:
        while True:
            head, body = await read_request(reader)
            method, target = head.split(b" ")[:2]
            path = target.split(b"?")[0]
            if path == b"/until-close":
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                await writer.drain()
                break
            if path == b"/chunked":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
                )
            elif path == b"/empty":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif method == b"HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            else:
                echo = head + body
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\n\r\n%s"
                    % (len(echo), echo)
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


OPEN: set[FrontConnection] = set()


def serve_v1(table: RouteTable, *places: tuple[str, str]) -> None:
    """Version v1's endpoint predict ready on one target per (region, upstream URL), as
    its record holds it."""
    version = RoutedVersion(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        status=VersionStatus.READY,
        endpoint_states=[
            RoutedEndpoint(
                endpoint="predict",
                target=f"local-{region}",
                region=region,
                state=WorkloadState.READY,
                upstreams=[upstream],
            )
            for region, upstream in places
        ],
    )
    assert table.put_version("acme/demo/web/v1", 1, version)


@pytest.fixture
async def router() -> AsyncIterator[str]:
    """The router's data plane on a free port, routing PREFIX to the upstream above."""
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = origin.sockets[0].getsockname()[1]
    table = RouteTable()
    serve_v1(table, ("eu", f"http://127.0.0.1:{port}"))
    proxy = Proxy(table, RouterSettings(region="eu"), RouterMetrics())
    connections = OPEN
    front = await asyncio.get_running_loop().create_server(
        lambda: FrontConnection(proxy.handle, connections), "127.0.0.1", 0
    )
    yield f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}"
    front.close()
    for connection in list(connections):
        connection.close()
    proxy.close()
    origin.close()


async def test_the_upstream_sees_its_own_host_the_rest_path_and_forwarding_headers(
    router: str,
) -> None:
    async with httpx.AsyncClient(base_url=router) as client:
        got = await client.get(
            f"{PREFIX}//169.254.169.254/latest?a=1",
            headers={"Connection": "keep-alive, X-Secret", "X-Secret": "s", "X-Kept": "k"},
        )
    assert got.status_code == 200
    head = got.text.lower()
    assert head.startswith("get //169.254.169.254/latest?a=1 http/1.1\r\n")
    assert "\r\nhost: 127.0.0.1:" in head  # the upstream's, never the client's
    assert "x-forwarded-for: 127.0.0.1" in head and f"x-vh-prefix: {PREFIX.lower()}" in head
    assert "x-kept: k" in head and "x-secret" not in head  # named in Connection: hop-by-hop
    assert "keep-alive" not in got.headers  # the upstream's hop-by-hop answer header
    assert (got.headers["X-Dockyard-Version"], got.headers["X-Dockyard-Region"]) == ("v1", "eu")


async def test_bodies_of_every_framing_reach_the_client_whole(router: str) -> None:
    async with httpx.AsyncClient(base_url=router) as client:
        chunked = await client.get(f"{PREFIX}/chunked")
        assert chunked.text == "onetwo"
        until_close = await client.get(f"{PREFIX}/until-close")
        assert until_close.text == "until close"
        assert until_close.headers["Transfer-Encoding"] == "chunked"  # re-framed for keep-alive
        empty = await client.get(f"{PREFIX}/empty")
        assert (empty.status_code, empty.content) == (204, b"")
        head = await client.head(f"{PREFIX}/x")
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "5", b"")

        async def pieces() -> AsyncIterator[bytes]:
            for piece in (b"streamed ", b"in ", b"pieces"):
                yield piece

        streamed = await client.post(f"{PREFIX}/echo", content=pieces())
        assert streamed.text.endswith("\r\n\r\nstreamed in pieces")
        sized = await client.post(f"{PREFIX}/echo", content=b"x" * 300_000)
        assert sized.content.endswith(b"\r\n\r\n" + b"x" * 300_000)


async def test_pipelined_and_http_1_0_requests_are_answered_in_order(router: str) -> None:
    host, port = router.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {PREFIX}/first HTTP/1.1\r\nHost: r\r\n\r\n"
        f"GET {PREFIX}/second HTTP/1.1\r\nHost: r\r\n\r\n"
        f"GET {PREFIX}/until-close HTTP/1.0\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 10)  # the 1.0 answer ends the connection
    writer.close()
    assert answer.index(b"GET /first") < answer.index(b"GET /second")
    assert answer.endswith(b"\r\n\r\nuntil close")  # no chunked framing for HTTP/1.0


async def test_unknown_paths_and_malformed_requests_get_problem_json(router: str) -> None:
    async with httpx.AsyncClient(base_url=router) as client:
        missing = await client.get("/acme/demo/web/v9/predict/")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["detail"] == "deployment acme/demo/web has no version or alias named v9"
    host, port = router.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_a_request_head_past_the_limit_is_refused_with_431(router: str) -> None:
    async with httpx.AsyncClient(base_url=router) as client:
        refused = await client.get(f"{PREFIX}/x", headers={"X-Big": "a" * 70_000})
        assert refused.status_code == 431
        assert refused.headers["Content-Type"] == "application/problem+json"
        fine = await client.get(f"{PREFIX}/x", headers={"X-Big": "a" * 30_000})
        assert fine.status_code == 200


async def test_a_connection_idle_past_the_timeout_is_closed(router: str) -> None:
    host, port = router.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {PREFIX}/x HTTP/1.1\r\nHost: r\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")  # answered, kept alive
    sweeper = asyncio.create_task(sweep_connections(OPEN, idle_s=0.2, head_s=10.0, every_s=0.05))
    try:
        rest = await asyncio.wait_for(reader.read(), 5)  # the body, then the close
        assert rest.startswith(b"GET /x")  # read() returned: the router closed it
    finally:
        sweeper.cancel()
        writer.close()


async def one_answer_per_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: bytes
) -> None:
    """Answer the first request of a connection with keep-alive, then drop the connection at
    the next one: a server closing an idle keep-alive connection as a request arrives."""
    try:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        await writer.drain()
        await read_request(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_a_keep_alive_connection_gone_stale_is_retried_on_the_same_upstream() -> None:
    servers = [
        await asyncio.start_server(
            lambda r, w, n=name: one_answer_per_connection(r, w, n), "127.0.0.1", 0
        )
        for name in (b"eu", b"us")
    ]
    table = RouteTable()
    serve_v1(
        table,
        *(
            (region, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            for region, server in zip(("eu", "us"), servers, strict=True)
        ),
    )
    proxy = Proxy(table, RouterSettings(region="eu"), RouterMetrics())
    front = await asyncio.get_running_loop().create_server(
        lambda: FrontConnection(proxy.handle, OPEN), "127.0.0.1", 0
    )
    url = f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}{PREFIX}/x"
    try:
        async with httpx.AsyncClient() as client:
            served = [(await client.get(url)).text for _ in range(5)]
    finally:
        front.close()
        proxy.close()
        for server in servers:
            server.close()
    # Every request after the first meets a stale connection: it stays in its region.
    assert served == ["eu"] * 5


async def test_a_process_without_its_tables_yet_answers_503_with_retry_after() -> None:
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    table = RouteTable(loaded=False)  # as a router process starts
    proxy = Proxy(table, RouterSettings(region="eu"), RouterMetrics())
    front = await asyncio.get_running_loop().create_server(
        lambda: FrontConnection(proxy.handle, OPEN), "127.0.0.1", 0
    )
    base = f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            early = await client.get(f"{PREFIX}/x")
            assert early.status_code == 503
            assert early.headers["Retry-After"] == "1"
            assert early.headers["Content-Type"] == "application/problem+json"
            assert early.json()["type"] == "https://dockyard.dev/problems/no-table"
            serve_v1(table, ("eu", f"http://127.0.0.1:{origin.sockets[0].getsockname()[1]}"))
            # What a feed applied serves at once; a miss is a 503 until the table is loaded.
            assert (await client.get(f"{PREFIX}/x")).status_code == 200
            assert (await client.get("/acme/demo/web/v9/predict/")).status_code == 503
            table.loaded = True  # the feeds caught up with the record (or the mirror came)
            unknown = await client.get("/acme/demo/web/v9/predict/")
            assert unknown.status_code == 404  # now a miss is a miss
    finally:
        front.close()
        proxy.close()
        origin.close()


def put_predict(table: RouteTable, state: WorkloadState, generation: int) -> None:
    """Version v1's endpoint predict on local-eu in ``state``, without upstreams."""
    version = RoutedVersion(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        status=VersionStatus.READY,
        endpoint_states=[
            RoutedEndpoint(
                endpoint="predict", target="local-eu", region="eu", state=state, upstreams=[]
            )
        ],
    )
    assert table.put_version("acme/demo/web/v1", generation, version)


@pytest.fixture
async def idle_router() -> AsyncIterator[tuple[str, Proxy, RouteTable, list[object]]]:
    """A router whose predict endpoint is idle (scaled to zero); the wake-ups it asked for."""
    table = RouteTable()
    put_predict(table, WorkloadState.IDLE, 1)
    wakes: list[object] = []
    proxy = Proxy(
        table, RouterSettings(region="eu", wake_deadline_s=10), RouterMetrics(), wake=wakes.append
    )
    front = await asyncio.get_running_loop().create_server(
        lambda: FrontConnection(proxy.handle, OPEN), "127.0.0.1", 0
    )
    yield f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}", proxy, table, wakes
    front.close()
    proxy.close()


async def test_a_held_request_whose_client_leaves_is_in_flight_no_more(
    idle_router: tuple[str, Proxy, RouteTable, list[object]],
) -> None:
    # Cancelled while held, it stayed in flight for ever: the endpoint never idled again.
    base, proxy, _, wakes = idle_router
    async with httpx.AsyncClient(base_url=base, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{PREFIX}/x")
    assert wakes, "the held request asked for no wake-up"
    for _ in range(100):  # the router notices the connection closed
        [window] = proxy.meter.take("r1", "eu")
        [entry] = window.endpoints
        if entry.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert (entry.in_flight, entry.requests, entry.errors) == (0, 1, 1)
    assert proxy.meter.take("r1", "eu") == []  # quiet now: forgotten


async def test_a_held_request_whose_wake_fails_is_told_why_at_once(
    idle_router: tuple[str, Proxy, RouteTable, list[object]],
) -> None:
    # It waited for the whole wake deadline, and got a 504 that hid the reason.
    base, proxy, table, _ = idle_router

    async def fail_the_start() -> None:
        await asyncio.sleep(0.3)
        put_predict(table, WorkloadState.FAILED, 2)
        proxy.routes_changed()

    failing = asyncio.create_task(fail_the_start())
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        answer = await client.get(f"{PREFIX}/x")
    await failing
    assert answer.status_code != 504, answer.text
    assert answer.status_code >= 500
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert not answer.json()["type"].endswith("/wake-timeout"), answer.text


def test_a_hold_queue_of_zero_is_refused() -> None:
    # Only a held request wakes an idle endpoint: with none held it never woke.
    with pytest.raises(ValidationError, match="hold_queue"):
        RouterSettings(region="eu", hold_queue=0)
