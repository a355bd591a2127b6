"""A request path taken apart, and how an alias picks a version for a request. Pure, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dockyard_common.models import AliasTarget

__all__ = ["RequestPath", "client_draw", "pick_version", "split_request_path"]


@dataclass(frozen=True)
class RequestPath:
    """A request path taken apart: the deployment, the version or alias, the endpoint."""

    deployment: str
    """``owner/project/deployment``."""
    name: str
    """The version or alias segment."""
    endpoint: str
    rest: str

    @property
    def prefix(self) -> str:
        """What the router strips before forwarding: ``/o/p/d/<version-or-alias>/<endpoint>``."""
        return f"/{self.deployment}/{self.name}/{self.endpoint}"

    def route_key(self, version: str) -> str:
        """The route key of this endpoint of ``version``."""
        return f"{self.deployment}/{version}/{self.endpoint}"


def split_request_path(raw_path: str) -> RequestPath | None:
    """``/o/p/d/v/e/rest`` taken apart; None when too short.

    The rest stays percent-encoded as received; it is only ever appended to an upstream path.
    """
    parts = raw_path.lstrip("/").split("/", 5)
    if len(parts) < 5 or not all(parts[:5]):
        return None
    owner, project, deployment, name, endpoint = parts[:5]
    rest = parts[5] if len(parts) == 6 else ""
    return RequestPath(f"{owner}/{project}/{deployment}", name, endpoint, rest)


def pick_version(target: AliasTarget, draw: float) -> str:
    """The version a request goes to; ``draw`` in [0, 1) places it within the weights."""
    if target.version is not None:
        return target.version
    weights = sorted((target.weights or {}).items())
    point = draw * 100
    for version, weight in weights:
        if point < weight:
            return version
        point -= weight
    return next(v for v, w in reversed(weights) if w > 0)


def client_draw(client_key: str) -> float:
    """A stable draw in [0, 1) for a client key: the same client always lands on one side."""
    return int(hashlib.sha256(client_key.encode()).hexdigest()[:8], 16) / 2**32
