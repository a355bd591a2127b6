"""One delivery attempt: check the destination again, sign, POST to the checked address."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from dockyard_api.webhooks.models import DeliveryJob, Webhook
from dockyard_api.webhooks.signing import sign
from dockyard_common.addresses import IPAddress, UnsafeDestination, checked_addresses

__all__ = ["Attempt", "Sender"]

_USER_AGENT = "Dockyard-Webhooks/0.1"
_MAX_ERROR = 500
_EXCERPT = 200
_MAX_CLIENTS = 256


@dataclass(frozen=True)
class Attempt:
    """What one attempt gave: success (a 2xx), the status, its latency and the error."""

    ok: bool
    status: int | None
    latency_ms: float | None
    error: str | None


def _pinned_url(url: str, address: IPAddress) -> str:
    """``url`` with its host replaced by the address that was checked (no second lookup)."""
    parsed = urllib.parse.urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))


class Sender:
    """Sends deliveries with one HTTP client; never follows redirects."""

    def __init__(self, allowed_hosts: list[str], timeout_s: float) -> None:
        self._allowed = allowed_hosts
        self._timeout_s = timeout_s
        # Requests go to checked addresses, and a pool keys connections by address: one
        # client per host name, or a TLS connection checked for one name would carry another.
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, host: str) -> httpx.AsyncClient:
        if host not in self._clients:
            if len(self._clients) >= _MAX_CLIENTS:
                oldest = next(iter(self._clients))
                asyncio.get_running_loop().create_task(self._clients.pop(oldest).aclose())
            self._clients[host] = httpx.AsyncClient(
                timeout=self._timeout_s, follow_redirects=False, trust_env=False
            )
        return self._clients[host]

    async def close(self) -> None:
        """Close the connections."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def send(self, webhook: Webhook, job: DeliveryJob) -> Attempt:
        """Deliver ``job`` to ``webhook`` once; the outcome. Never raises: whatever goes wrong
        is a failed attempt, retried later, so one receiver can never stop the others."""
        try:
            return await self._send(webhook, job)
        except Exception as exc:
            return Attempt(False, None, None, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])

    async def _send(self, webhook: Webhook, job: DeliveryJob) -> Attempt:
        try:
            host, addresses = await checked_addresses(webhook.url, self._allowed)
        except UnsafeDestination as exc:
            return Attempt(ok=False, status=None, latency_ms=None, error=str(exc))
        body = job.body.encode()
        timestamp = int(time.time())
        parsed = urllib.parse.urlsplit(webhook.url)
        headers = {
            "Host": parsed.netloc.rpartition("@")[2],
            "Content-Type": "application/cloudevents+json",
            "User-Agent": _USER_AGENT,
            "webhook-id": job.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(webhook.secret, job.delivery_id, timestamp, body),
        }
        started = time.perf_counter()
        try:
            # The timeout bounds the whole attempt: a receiver trickling bytes fails it too.
            async with asyncio.timeout(self._timeout_s):
                status, excerpt = await self._post_to_any(
                    webhook.url, addresses, host, body, headers
                )
        except TimeoutError:
            return Attempt(False, None, _since(started), "the receiver did not answer in time")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
            return Attempt(False, None, _since(started), error)
        latency = _since(started)
        if 200 <= status < 300:
            return Attempt(True, status, latency, None)
        if 300 <= status < 400:
            return Attempt(
                False, status, latency, f"answered {status} (redirects are not followed)"
            )
        return Attempt(False, status, latency, f"answered {status}: {excerpt}"[:_MAX_ERROR])

    async def _post_to_any(
        self,
        url: str,
        addresses: list[IPAddress],
        host: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, str]:
        """POST to the first checked address that takes a connection (IPv4 and IPv6 both)."""
        for address in addresses[:-1]:
            try:
                return await self._post(url, address, host, body, headers)
            except httpx.ConnectError:
                continue
        return await self._post(url, addresses[-1], host, body, headers)

    async def _post(
        self, url: str, address: IPAddress, host: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str]:
        async with self._client(host).stream(
            "POST",
            _pinned_url(url, address),
            content=body,
            headers=headers,
            # TLS is checked against the URL's host, not the address connected to.
            extensions={"sni_hostname": host},
        ) as response:
            excerpt = b""
            async for chunk in response.aiter_raw():
                excerpt += chunk
                if len(excerpt) >= _EXCERPT:
                    break  # the rest of a long answer is not needed
            return response.status_code, excerpt[:_EXCERPT].decode(errors="replace")


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
