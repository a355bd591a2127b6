"""Testing an endpoint from the console: the API sends the call to the router, as a user's
client would, and shows what came back and who served it.

The URL is built from the router's address (settings) and the validated names; the path a
user types is percent-encoded under the endpoint, so it cannot reach another host or climb
out of the endpoint. Headers that would change the hop itself are dropped.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import httpx

__all__ = [
    "SampleCall",
    "SampleResult",
    "check_body",
    "curl_command",
    "parse_headers",
    "run_test_call",
]

MAX_ANSWER_BYTES = 64 * 1024
MAX_HEADERS = 30
_DROPPED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)


@dataclass(frozen=True)
class SampleCall:
    """What the test form asks for."""

    owner: str
    project: str
    deployment: str
    serving: str
    """A version or alias name."""
    endpoint: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    headers: list[tuple[str, str]]
    body_kind: Literal["none", "json", "form"]
    body: str

    def url(self, router_url: str) -> str:
        """The router URL of the call."""
        rest = quote(self.path.lstrip("/"), safe="/?=&%-._~")
        rest = "/".join(part for part in rest.split("/") if part not in ("..", "."))
        return (
            f"{router_url.rstrip('/')}/{self.owner}/{self.project}/{self.deployment}/"
            f"{self.serving}/{self.endpoint}/{rest}"
        )


@dataclass(frozen=True)
class SampleResult:
    """What came back."""

    status: int | None
    latency_ms: float
    headers: list[tuple[str, str]]
    answer: str
    truncated: bool
    version: str | None
    region: str | None
    alias: str | None
    error: str | None = None


def parse_headers(text: str) -> list[tuple[str, str]]:
    """``Name: value`` lines; raises ValueError naming a line that is not one."""
    headers = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"not a 'Name: value' header line: {line[:80]!r}")
        if name.lower() not in _DROPPED:
            headers.append((name, value.strip()))
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    return headers


_CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}


def check_body(call: SampleCall) -> None:
    """Raise ValueError when a JSON body does not parse."""
    if call.body_kind == "json":
        try:
            json.loads(call.body)
        except ValueError as exc:
            raise ValueError(f"the JSON body does not parse: {exc}") from None


def _content(call: SampleCall) -> tuple[bytes | None, list[tuple[str, str]]]:
    """The body to send and the header naming its type."""
    kind = _CONTENT_TYPES.get(call.body_kind)
    if kind is None:
        return None, []
    return call.body.encode(), [("Content-Type", kind)]


def curl_command(call: SampleCall, router_url: str) -> str:
    """The same call as a shell command a user can paste."""
    parts = ["curl", "-i", "-X", call.method]
    _, extra = _content(call)
    for name, value in [*extra, *call.headers]:
        parts += ["-H", f"{name}: {value}"]
    if call.body_kind != "none":
        parts += ["--data-binary", call.body]
    parts.append(call.url(router_url))
    return shlex.join(parts)


async def run_test_call(call: SampleCall, router_url: str, timeout_s: float = 30.0) -> SampleResult:
    """Send the call to the router; a failure to reach it is a result too."""
    content, extra = _content(call)
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client,
            client.stream(
                call.method, call.url(router_url), content=content, headers=[*extra, *call.headers]
            ) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    break
    except httpx.HTTPError as exc:
        return SampleResult(
            status=None,
            latency_ms=(time.perf_counter() - started) * 1000,
            headers=[],
            answer="",
            truncated=False,
            version=None,
            region=None,
            alias=None,
            error=f"the router did not answer: {type(exc).__name__}: {exc}",
        )
    latency = (time.perf_counter() - started) * 1000
    return SampleResult(
        status=response.status_code,
        latency_ms=latency,
        headers=list(response.headers.items()),
        answer=body[:MAX_ANSWER_BYTES].decode("utf-8", "replace"),
        truncated=len(body) > MAX_ANSWER_BYTES,
        version=response.headers.get("X-Dockyard-Version"),
        region=response.headers.get("X-Dockyard-Region"),
        alias=response.headers.get("X-Dockyard-Alias"),
    )
