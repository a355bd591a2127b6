"""Reaching a replica directly, as the router does, and finding its processes."""

from __future__ import annotations

from pathlib import Path

import httpx

__all__ = ["replica_get", "server_processes"]


async def replica_get(upstream: str, path: str = "/") -> httpx.Response:
    """GET ``path`` of a replica at ``upstream``: ``http://host:port``, or ``unix:/socket`` of
    a local replica in a network namespace of its own."""
    if upstream.startswith("unix:"):
        transport = httpx.AsyncHTTPTransport(uds=upstream.removeprefix("unix:"))
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            return await client.get(f"http://localhost{path}")
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"{upstream}{path}")


def server_processes(prefix: str) -> set[int]:
    """The processes of the endpoint whose prefix is ``prefix`` (its servers and their
    children), without the launchers that hold their namespaces."""
    found = set()
    needle = f"VH_DEFAULT_PREFIX={prefix}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes() and not _launcher(entry):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _launcher(process: Path) -> bool:
    command = (process / "cmdline").read_bytes().split(b"\0")
    return command[0].endswith(b"unshare") or any(p.endswith(b"/sandbox.py") for p in command)
