"""The data plane: forwards ``/<owner>/<project>/<deployment>/<version>/<endpoint>/...``.

Upstream URLs come only from the route table. The request line sent upstream is the
rest path as received (still percent-encoded, always starting with ``/``) and the Host
is the upstream's: no request can change the upstream's host or scheme.

A request goes to a replica in the preferred region (the ``X-Dockyard-Region`` header, else
the router's own), replicas taken in turn; it is retried once on the next candidate only
when no connection could be made (nothing was sent), or when the connection dropped before
an answer and the method is idempotent.

A request whose Host header is missing (HTTP/1.1), repeated or not a ``host[:port]`` is
refused with 400 (RFC 9112 §3.2); a valid one reaches the upstream as X-Forwarded-Host. A
path that resolves to nothing is answered with why (:meth:`RouteTable.explain`), and with
503 while this process has not loaded its tables yet. A path naming an endpoint scaled to
zero (``idle``) is held instead: the router asks the scheduler for a replica (a
:class:`~dockyard_common.traffic.WakeRequest`, at most once a second per endpoint) and
forwards the request the moment the table shows one ready; past ``hold_queue`` held requests
per endpoint it answers 503 with ``Retry-After``, past ``wake_deadline_s`` 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import time
from collections.abc import Callable

import httptools

from dockyard_common import get_logger
from dockyard_common.traffic import WakeRequest
from dockyard_router.exchange import Exchange
from dockyard_router.meter import TrafficMeter
from dockyard_router.metrics import RouterMetrics
from dockyard_router.paths import client_draw
from dockyard_router.problems import problem_response
from dockyard_router.settings import RouterSettings
from dockyard_router.tables import IdleRoute, Resolution, RouteTable
from dockyard_router.upstreams import UNIX_SCHEME, UpstreamPools, UpstreamUnavailable

__all__ = ["HOP_BY_HOP", "INTERNAL_PREFIXES", "Proxy", "host_header", "request_target"]

log = get_logger(__name__)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-vh-prefix",
    }
)
"""Request headers not passed on as they came (the last five are set by the router)."""
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
INTERNAL_PREFIXES = ("/_ops/", "/_ops?", "/metrics", "/healthz")
"""Paths the router answers itself (served by its internal app)."""

_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")
"""RFC 9110's ``uri-host [ ":" port ]``: an IP literal or a registered name, no userinfo."""
_HOSTS_CACHED = 1024
_NO_TABLE_RETRY = b"Retry-After: 1\r\n"
_WAKE_AGAIN_S = 1.0
"""A held request's endpoint is asked for again this often (a wake-up may be lost)."""


def request_target(rest: str, query: bytes) -> bytes:
    """The request target sent upstream: ``/`` + the rest path as received, + the query.

    It always starts with ``/`` (origin-form), so the upstream reads it as a path on
    itself, whatever it holds (``//169.254.169.254/x``, ``http://evil/``).
    """
    return b"/" + rest.encode("latin-1") + (b"?" + query if query else b"")


def host_header(upstream: str) -> bytes:
    """The Host sent upstream: the upstream URL's authority, from the route table only
    (``localhost`` for a Unix socket)."""
    if upstream.startswith(UNIX_SCHEME):
        return b"localhost"
    return upstream.partition("//")[2].partition("/")[0].encode()


class Proxy:
    """Forwards exchanges to the upstreams the route table names."""

    def __init__(
        self,
        table: RouteTable,
        settings: RouterSettings,
        metrics: RouterMetrics,
        internal: str | None = None,
        meter: TrafficMeter | None = None,
        wake: Callable[[WakeRequest], None] | None = None,
    ) -> None:
        self._table = table
        self._settings = settings
        self._metrics = metrics
        self.meter = TrafficMeter() if meter is None else meter
        self._wake = wake
        self._held: dict[str, int] = {}
        self._woken: dict[str, float] = {}
        self._routes_changed = asyncio.Event()
        self._internal = internal
        self._region = settings.region
        self._pools = UpstreamPools(
            settings.upstream_connections,
            settings.upstream_connect_timeout_s,
            settings.upstream_eject_s,
        )
        self._hosts: dict[str, bytes] = {}
        self._good_hosts: set[bytes] = set()
        self._timeouts: dict[str, float] = {}
        self._children: dict[tuple[str, str, str, int], tuple[object, object]] = {}
        self._turn = itertools.count()

    def healthy(self, upstream: str) -> bool:
        """Whether requests go to ``upstream`` now (False while set aside after a failure)."""
        return self._pools.healthy(upstream, time.monotonic())

    def routes_changed(self) -> None:
        """The tables took a write: held requests look again."""
        self._routes_changed.set()
        self._routes_changed = asyncio.Event()

    def close(self) -> None:
        """Close the idle upstream connections."""
        self._pools.close()

    # -- per request --

    async def handle(self, exchange: Exchange) -> None:
        """Answer one exchange: from an upstream, or with a problem+json error."""
        url = exchange.url
        if url.startswith(b"/"):
            path, _, query = url.partition(b"?")
        else:  # absolute-form (a client talking to us as to a forward proxy)
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                return self._problem(
                    exchange, 400, "bad-request", "the request target is not a URL"
                )
            path, query = parsed.path or b"/", parsed.query or b""
        raw_path = path.decode("latin-1")

        region, client = self._region, None
        forwarded_for, host, kept = b"", None, []
        connection_tokens: list[bytes] = []
        for name, value in exchange.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if lower == b"x-forwarded-for":
                    forwarded_for = value
                elif lower == b"host":
                    if host is not None:
                        return self._problem(
                            exchange, 400, "bad-request", "the request has more than one Host"
                        )
                    host = value
                elif lower == b"connection":
                    connection_tokens += (t.strip().lower() for t in value.split(b","))
                continue
            if lower == b"x-dockyard-region":
                region = value.decode("latin-1") or region
            elif lower == b"x-dockyard-client-key":
                client = value
            kept.append(b"%s: %s\r\n" % (name, value))
        if host is None:
            if exchange.http11:
                return self._problem(
                    exchange, 400, "bad-request", "an HTTP/1.1 request needs a Host header"
                )
        elif host not in self._good_hosts and not self._valid_host(host):
            shown = host.decode("latin-1")[:100]
            return self._problem(
                exchange, 400, "bad-request", f"the Host header {shown!r} is not host[:port]"
            )
        if self._internal is not None and raw_path.startswith(INTERNAL_PREFIXES):
            target = path + (b"?" + query if query else b"")
            return await self._forward_internal(exchange, target)
        if connection_tokens:  # headers named in Connection are hop-by-hop too (RFC 9110)
            named = {t for t in connection_tokens if t not in (b"keep-alive", b"close")}
            kept = [line for line in kept if line.split(b":", 1)[0].lower() not in named]

        draw = client_draw(client.decode("latin-1")) if client else random.random()  # noqa: S311
        resolution = self._table.resolve(raw_path, region, draw)
        if resolution is None:
            idle = None
            if self._wake is not None and self._table.loaded:
                idle = self._table.idle(raw_path, region, draw)
            if idle is None:
                return self._unrouted(exchange, raw_path, region, draw)
            resolution = await self._hold(exchange, idle, raw_path, region, draw)
            if resolution is None:
                return None
        forwarded = b"%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % (
            b"".join(kept),
            forwarded_for + b", " + exchange.front.peer if forwarded_for else exchange.front.peer,
        )
        if host:
            forwarded += b"X-Forwarded-Host: %s\r\n" % host
        forwarded += b"X-VH-Prefix: %s\r\n" % resolution.prefix.encode("latin-1")
        if exchange.chunked_request:
            forwarded += b"Transfer-Encoding: chunked\r\n"
        await self._forward(exchange, resolution, request_target(resolution.rest, query), forwarded)

    async def _hold(
        self, exchange: Exchange, idle: IdleRoute, raw_path: str, region: str, draw: float
    ) -> Resolution | None:
        """Hold a request for an endpoint scaled to zero until a replica serves it; its
        resolution then, or None once answered (queue full: 503, deadline: 504, a start that
        failed: why, as for any request routed nowhere)."""
        held = self._held.get(idle.key, 0)
        if held >= self._settings.hold_queue:
            self._metrics.unrouted.labels("hold-queue-full").inc()
            self._problem(
                exchange,
                503,
                "hold-queue-full",
                f"{idle.key} is starting from zero and {held} requests already wait for it "
                "here: try again shortly",
                _NO_TABLE_RETRY,
            )
            return None
        self._held[idle.key] = held + 1
        owner, project, deployment = idle.scope
        labels = (f"{owner}/{project}/{deployment}", idle.version, idle.endpoint, idle.region)
        self.meter.started(labels)  # the autoscaler sees what waits as in flight
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._settings.wake_deadline_s
        # Every way out ends what started() began: a request cancelled while held (its
        # client gone, a shutdown) would otherwise stay "in flight" for ever, so the
        # endpoint would never idle again and its phantom load would add replicas.
        counted = True
        try:
            while True:
                now = loop.time()
                last = self._woken.get(idle.key, -_WAKE_AGAIN_S)
                if self._wake is not None and now - last >= _WAKE_AGAIN_S:
                    self._woken[idle.key] = now
                    self._wake(
                        WakeRequest(
                            owner=owner,
                            project=project,
                            deployment=deployment,
                            version=idle.version,
                            endpoint=idle.endpoint,
                            region=idle.region,
                        )
                    )
                resolution = self._table.resolve(raw_path, region, draw)
                if resolution is not None:
                    self.meter.released(labels)
                    counted = False
                    return resolution
                if (
                    self._table.idle(raw_path, region, draw) is None
                    and self._table.explain(raw_path, region, draw).retry_after_s is None
                ):
                    # Neither served, idle nor starting any more (the start failed, the
                    # version went): the reason now, not a 504 at the deadline. A start
                    # reported "deploying" on its way is waited for.
                    self.meter.finished(labels, 503, now - started, failed=True)
                    counted = False
                    self._unrouted(exchange, raw_path, region, draw)
                    return None
                if now >= deadline:
                    self.meter.finished(labels, 504, now - started, failed=True)
                    counted = False
                    break
                changed = self._routes_changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(deadline - now, _WAKE_AGAIN_S)):
                        await changed.wait()
        finally:
            self._held[idle.key] -= 1
            if not self._held[idle.key]:
                del self._held[idle.key]
                self._woken.pop(idle.key, None)
            if counted:  # cancelled while held: 499, as nginx logs a client gone
                self.meter.finished(labels, 499, loop.time() - started, failed=True)
        self._problem(
            exchange,
            504,
            "wake-timeout",
            f"{idle.key} was scaled to zero and no replica of it was ready within "
            f"{self._settings.wake_deadline_s:g} s",
        )
        return None

    def _valid_host(self, host: bytes) -> bool:
        """Whether a Host header holds ``host[:port]``; valid ones are remembered (bounded),
        so a request path sees a few hosts checked once each."""
        if _HOST.fullmatch(host) is None:
            return False
        if len(self._good_hosts) < _HOSTS_CACHED:
            self._good_hosts.add(host)
        return True

    def _unrouted(self, exchange: Exchange, raw_path: str, region: str, draw: float) -> None:
        """Answer a request whose path resolves to nothing, saying why."""
        table = self._table
        if not table.loaded:
            self._metrics.unrouted.labels("no-table").inc()
            return self._problem(
                exchange,
                503,
                "no-table",
                "this router process has not loaded its route table yet",
                _NO_TABLE_RETRY,
            )
        miss = table.explain(raw_path, region, draw)
        self._metrics.unrouted.labels(miss.slug).inc()
        retry = b"Retry-After: %d\r\n" % miss.retry_after_s if miss.retry_after_s else b""
        return self._problem(exchange, miss.status, miss.slug, miss.detail, retry)

    async def _forward(
        self, exchange: Exchange, resolution: Resolution, target: bytes, headers: bytes
    ) -> None:
        started = time.perf_counter()
        candidates = self._candidates(resolution)
        # The feed counts a request where its first candidate runs, start to end.
        traffic_labels = resolution.labels(candidates[0][0] if candidates else self._region)
        self.meter.started(traffic_labels)
        retryable = exchange.method in _IDEMPOTENT
        timeout = self._timeout_for(resolution)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._expire, exchange)
        served_by, last_error = "", ""
        # (region, upstream, on a new connection): the preferred replica, then one other.
        tries = [(region, upstream, False) for region, upstream in candidates[:2]]
        try:
            for attempt in range(3):
                if attempt >= len(tries):
                    break
                region, upstream, fresh = tries[attempt]
                try:
                    connection = await self._pools.acquire(upstream, fresh=fresh)
                except UpstreamUnavailable as exc:
                    # Nothing was sent: the next candidate may take it, whatever the method.
                    self._pools.set_aside(upstream)
                    self._count_error(resolution, region, "connect")
                    log.warning("proxy.upstream.unreachable", upstream=upstream, error=str(exc))
                    last_error = str(exc)
                    continue
                if exchange.timed_out:  # the deadline passed while connecting
                    connection.abort()
                    return self._problem(
                        exchange,
                        504,
                        "gateway-timeout",
                        f"{resolution.key} did not answer within {timeout:g} s",
                    )
                exchange.extra_head = self._extra_head(resolution, region)
                head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
                    exchange.method,
                    target,
                    self._host_of(upstream),
                    headers,
                )
                if await exchange.attach(connection, head):
                    served_by = region
                    return
                if exchange.timed_out:
                    self._count_error(resolution, region, "timeout")
                    log.warning("proxy.upstream.timeout", upstream=upstream, timeout_s=timeout)
                    if not exchange.started:
                        self._problem(
                            exchange,
                            504,
                            "gateway-timeout",
                            f"{resolution.key} did not answer within {timeout:g} s",
                        )
                    return
                self._count_error(resolution, region, "connect")
                log.warning("proxy.upstream.dropped", upstream=upstream, answered=exchange.started)
                if exchange.started:
                    exchange.front.close()  # the response is cut short: the client must see it
                    return
                last_error = f"{upstream} closed the connection"
                # It may have acted on the request: only an idempotent one goes again.
                if not (retryable and exchange.replayable()):
                    break
                if connection.reused:
                    # A keep-alive connection the upstream had closed: nothing is wrong with
                    # the upstream, so it gets the request again on a new connection first.
                    tries.insert(attempt + 1, (region, upstream, True))
                else:
                    self._pools.set_aside(upstream)
            self._problem(
                exchange,
                502,
                "bad-gateway",
                f"no upstream of {resolution.key} answered ({last_error})",
            )
        finally:
            timer.cancel()
            seconds = time.perf_counter() - started
            self._observe(resolution, served_by, exchange.status, seconds)
            self.meter.finished(traffic_labels, exchange.status, seconds, failed=not served_by)

    async def _forward_internal(self, exchange: Exchange, target: bytes) -> None:
        """The router's own pages (ops API, metrics, health), served by its internal app."""
        try:
            connection = await self._pools.acquire(str(self._internal))
        except UpstreamUnavailable as exc:
            return self._problem(
                exchange, 502, "bad-gateway", f"the router's ops app is unavailable: {exc}"
            )
        lines = b"".join(
            b"%s: %s\r\n" % (n, v) for n, v in exchange.headers if n.lower() not in HOP_BY_HOP
        )
        if exchange.chunked_request:
            lines += b"Transfer-Encoding: chunked\r\n"
        head = b"%s %s HTTP/1.1\r\nHost: router\r\n%s\r\n" % (exchange.method, target, lines)
        if not await exchange.attach(connection, head) and not exchange.started:
            self._problem(exchange, 502, "bad-gateway", "the router's ops app dropped the request")

    # -- helpers of the request path --

    def _candidates(self, resolution: Resolution) -> list[tuple[str, str]]:
        """Upstreams to try in order: the preferred region's replicas in turn, healthy ones
        before those set aside after a failure."""
        upstreams = resolution.upstreams
        if len(upstreams) > 1:
            first = upstreams[0][0]
            same = 1
            while same < len(upstreams) and upstreams[same][0] == first:
                same += 1
            if same > 1:
                turn = next(self._turn) % same
                upstreams = upstreams[turn:same] + upstreams[:turn] + upstreams[same:]
            now = time.monotonic()
            healthy = [c for c in upstreams if self._pools.healthy(c[1], now)]
            if len(healthy) < len(upstreams):
                upstreams = healthy + [c for c in upstreams if c not in healthy]
        return upstreams

    def _expire(self, exchange: Exchange) -> None:
        exchange.timed_out = True
        if exchange.upstream is not None:
            exchange.upstream.abort()
            exchange.upstream_lost(exchange.started)

    def _timeout_for(self, resolution: Resolution) -> float:
        timeout = self._timeouts.get(resolution.key)
        if timeout is None:
            deployment, _, endpoint = resolution.key.rpartition(f"/{resolution.version}/")
            configured = self._settings.endpoint_timeouts
            timeout = configured.get(
                f"{deployment}/{endpoint}",
                configured.get(deployment, self._settings.upstream_timeout_s),
            )
            self._timeouts[resolution.key] = timeout
        return timeout

    def _host_of(self, upstream: str) -> bytes:
        host = self._hosts.get(upstream)
        if host is None:
            host = self._hosts[upstream] = host_header(upstream)
        return host

    @staticmethod
    def _extra_head(resolution: Resolution, region: str) -> bytes:
        head = b"X-Dockyard-Version: %s\r\nX-Dockyard-Region: %s\r\n" % (
            resolution.version.encode(),
            region.encode(),
        )
        if resolution.alias is not None:
            head += b"X-Dockyard-Alias: %s\r\n" % resolution.alias.encode()
        return head

    def _problem(
        self, exchange: Exchange, status: int, slug: str, detail: str, headers: bytes = b""
    ) -> None:
        answer = problem_response(
            status, slug, detail, keep_alive=exchange.keep_alive, headers=headers
        )
        exchange.answer(answer, status)

    def _count_error(self, resolution: Resolution, region: str, kind: str) -> None:
        self._metrics.upstream_errors.labels(*resolution.labels(region), kind).inc()

    def _observe(self, resolution: Resolution, region: str, status: int, seconds: float) -> None:
        key = (resolution.key, resolution.version, region, status)
        children = self._children.get(key)
        if children is None:
            labels = resolution.labels(region)
            children = self._children[key] = (
                self._metrics.requests.labels(*labels, str(status)),
                self._metrics.latency.labels(*labels),
            )
        counter, histogram = children
        counter.inc()  # type: ignore[attr-defined]
        histogram.observe(seconds)  # type: ignore[attr-defined]
