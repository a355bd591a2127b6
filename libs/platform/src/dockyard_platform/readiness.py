"""Waiting until the platform this launcher started is ready, and not another one.

The API's ``GET /readyz/platform`` answers for the platform as a whole (the API, a router
serving, the targets registered) and names the platform's instance id: an answer with
another id comes from another platform on the same port, never taken for ours. The local
targets are registered as soon as the API can take them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["PlatformAnswer", "StartFailed", "judge_answer", "wait_until_platform_ready"]


class StartFailed(RuntimeError):
    """The platform could not start; the message says why."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    ready: bool
    detail: str


class _Readiness(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ready: bool
    instance_id: str
    parts: list[_Part]


@dataclass(frozen=True)
class PlatformAnswer:
    """What one ``/readyz/platform`` answer means to the launcher."""

    ours: bool
    api_ready: bool
    ready: bool
    waiting_for: str
    """The parts not ready yet, for a message."""


def judge_answer(status: int, body: bytes, instance_id: str) -> PlatformAnswer | None:
    """Read an answer of ``/readyz/platform``; None if it is not one (another server on the
    port, or an API too old to have the route). Pure."""
    if status not in (200, 503):
        return None
    try:
        readiness = _Readiness.model_validate_json(body)
    except ValidationError:
        return None
    parts = {part.name: part for part in readiness.parts}
    api = parts.get("api")
    return PlatformAnswer(
        ours=readiness.instance_id == instance_id,
        api_ready=api is not None and api.ready,
        ready=readiness.ready and status == 200,
        waiting_for="; ".join(f"{p.name}: {p.detail}" for p in readiness.parts if not p.ready),
    )


async def wait_until_platform_ready(
    api_url: str,
    instance_id: str,
    admin_token: str,
    targets: Sequence[Mapping[str, str]],
    timeout_s: float,
) -> None:
    """Register ``targets`` once this platform's API takes them, and return once its
    ``/readyz/platform`` answers 200; StartFailed if another platform answers, or if it is
    not ready within ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    registered = False
    last = "the API did not answer"
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=2.0) as client:
        while loop.time() < deadline:
            try:
                response = await client.get("/readyz/platform")
                answer = judge_answer(response.status_code, response.content, instance_id)
                if answer is not None and not answer.ours:
                    raise StartFailed(
                        f"another Dockyard platform answers at {api_url}: stop it, or "
                        "choose other ports (DOCKYARD_API_PORT, DOCKYARD_ROUTER_PORT)"
                    )
                if answer is not None and answer.api_ready and not registered:
                    registered = await _register(client, targets)
                    continue
                if answer is not None and answer.ready:
                    return
                if answer is not None:
                    last = answer.waiting_for
            except httpx.TransportError as exc:
                last = f"the API did not answer ({exc!r})"
            await asyncio.sleep(0.05)
    raise StartFailed(f"the platform was not ready within {timeout_s:g} s: {last}")


async def _register(client: httpx.AsyncClient, targets: Sequence[Mapping[str, str]]) -> bool:
    """Register each target that is not yet (a restart keeps what the data holds); False
    when the API could not answer for now (a 5xx), StartFailed when it refuses."""
    for target in targets:
        found = await client.get(f"/v1/targets/{target['name']}")
        if found.status_code == 404:
            body = {k: v for k, v in target.items() if k != "name"}
            found = await client.put(f"/v1/targets/{target['name']}", json=body)
        if found.status_code >= 500:
            return False
        if found.status_code not in (200, 201):
            raise StartFailed(f"the API refused target {target['name']}: {found.text}")
    return True
