"""Fetching a version's code from git: one commit, shallow, no credentials prompted."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from dockyard_common import PermanentError, TransientError
from dockyard_common.models import GitRef

__all__ = ["fetch_commit"]

# Failures that may pass on their own; anything else (no such ref, no such repo) is final.
_TRANSIENT = (
    "Could not resolve host",
    "Connection timed out",
    "Connection refused",
    "early EOF",
    "unable to access",
)


async def _git(*args: str, cwd: Path, timeout_s: float) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        },
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TransientError(f"git {args[0]} took longer than {timeout_s:g} s") from None
    if process.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()
        message = reason[-1] if reason else f"exit code {process.returncode}"
        error = TransientError if any(m in message for m in _TRANSIENT) else PermanentError
        raise error(f"git {args[0]} failed: {message}")
    return out.decode().strip()


async def fetch_commit(
    ref: GitRef, dest: Path, *, allow_file_urls: bool, timeout_s: float = 300.0
) -> str:
    """Check out ``ref`` of ``ref.url`` into ``dest`` (without ``.git``); its commit sha."""
    if ref.url.startswith("file://") and not allow_file_urls:
        raise PermanentError(
            f"git URL {ref.url!r} reads this server's disk; file:// URLs are not allowed here"
        )
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    await _git("init", "-q", cwd=dest, timeout_s=timeout_s)
    try:
        await _git(
            "fetch",
            "-q",
            "--depth",
            "1",
            "--no-tags",
            ref.url,
            ref.ref,
            cwd=dest,
            timeout_s=timeout_s,
        )
    except PermanentError as exc:
        raise PermanentError(f"could not fetch {ref.ref!r} from {ref.url}: {exc}") from exc
    await _git(
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "-q",
        "FETCH_HEAD",
        cwd=dest,
        timeout_s=timeout_s,
    )
    commit = await _git("rev-parse", "HEAD", cwd=dest, timeout_s=timeout_s)
    await asyncio.to_thread(shutil.rmtree, dest / ".git")
    return commit
