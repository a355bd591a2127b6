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
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def send(self, webhook: Webhook, job: DeliveryJob) -> Attempt:
        """Deliver ``job`` to ``webhook`` once; the outcome (never raises for the receiver)."""
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
                status, excerpt = await self._post(webhook.url, addresses[0], host, body, headers)
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

    async def _post(
        self, url: str, address: IPAddress, host: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str]:
        async with self._client.stream(
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
