"""``If-Match`` against a resource's revision (its ``ETag``): stale writes are refused."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from dockyard_api.problems import Problem

__all__ = ["IfMatch", "check_if_match", "etag"]

IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="The ETag read earlier: refuse the write if it changed."),
]


def etag(revision: int) -> str:
    """The ETag of a revision."""
    return f'"{revision}"'


def check_if_match(if_match: str | None, current: int | None) -> None:
    """412 unless ``If-Match`` is absent, ``*`` on an existing resource, or its current ETag."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if current is not None and ("*" in tags or etag(current) in tags):
        return
    now = "does not exist" if current is None else f"is at {etag(current)}"
    raise Problem(
        412,
        "precondition-failed",
        f"If-Match {if_match} does not hold: the resource {now}; read it again",
    )
