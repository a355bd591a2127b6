"""Whether the platform as a whole is ready: the API, a router serving, the targets there.

``GET /readyz`` says whether this API process can serve; ``GET /readyz/platform`` says
whether the platform can take a deployment end to end, and lists each part with why it is
not ready yet. Pure: the route gathers the facts, :func:`platform_readiness` judges them.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PlatformReadiness", "ReadinessPart", "platform_readiness"]


class ReadinessPart(BaseModel):
    """One part of the platform and whether it is ready."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="api, router or targets.")
    ready: bool
    detail: str = Field(description="What was seen, for people.")


class PlatformReadiness(BaseModel):
    """The platform's readiness: ready only when every part is."""

    model_config = ConfigDict(frozen=True)

    ready: bool
    instance_id: str = Field(
        description="Names this API process's platform: a launcher tells its own platform's "
        "answer from another's on the same port."
    )
    parts: list[ReadinessPart]


def platform_readiness(
    *,
    instance_id: str,
    api_problem: str | None,
    routers: int,
    targets: Collection[str],
    expected_targets: Collection[str],
) -> PlatformReadiness:
    """Judge the platform's parts. ``api_problem`` is why the API cannot serve (None when
    it can), ``routers`` the router processes heard from lately, ``targets`` the registered
    ones; ``expected_targets`` must all be registered (or, when empty, at least one)."""
    api = ReadinessPart(
        name="api",
        ready=api_problem is None,
        detail=api_problem or "NATS answers and the event stream exists",
    )
    router = ReadinessPart(
        name="router",
        ready=routers > 0,
        detail=f"{routers} router process(es) serving"
        if routers
        else "no router process has been heard from yet",
    )
    missing = sorted(set(expected_targets) - set(targets))
    if expected_targets:
        ready, detail = (
            not missing,
            f"not registered yet: {', '.join(missing)}"
            if missing
            else f"{len(expected_targets)} expected target(s) registered",
        )
    else:
        ready = bool(targets)
        detail = f"{len(targets)} target(s) registered" if targets else "no target registered"
    parts = [api, router, ReadinessPart(name="targets", ready=ready, detail=detail)]
    return PlatformReadiness(
        ready=all(part.ready for part in parts), instance_id=instance_id, parts=parts
    )
