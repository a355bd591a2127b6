"""Fetching a version's code from git: one commit, shallow, no credentials prompted, and
only from the address the host was checked at.

The host is resolved once and every address checked against the platform's address
policy (no loopback, private, link-local or metadata addresses), then git is made to
connect to exactly those addresses: curl's resolve table for https, ssh's ``HostName``
for ssh (host keys still checked under the name, ``HostKeyAlias``). Redirects are not
followed and no other protocol is allowed, so nothing reaches an address that was not
checked. A failed fetch says the same whatever the far side did (refused, silent, not a
git server, access denied): the build result is not a port scanner. The reason git gave
is in the builder's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
from pathlib import Path

from dockyard_common import PermanentError, get_logger
from dockyard_common.addresses import (
    GitDestination,
    Resolver,
    UnsafeDestination,
    checked_git_destination,
    resolve_host,
)
from dockyard_common.models import GitRef

__all__ = ["FetchFailed", "fetch_commit", "pinned_git_options"]

log = get_logger(__name__)


class FetchFailed(Exception):
    """git exited non-zero or took too long; the message is git's, for the log only."""


async def _git(*args: str, cwd: Path, timeout_s: float, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        # Its own process group: git's helpers (git-remote-https, ssh) hold its pipes, and
        # a timeout must end them too, or waiting for git would wait for them.
        start_new_session=True,
        env={
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            **(env or {}),
        },
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise FetchFailed(f"git took longer than {timeout_s:g} s") from None
    if process.returncode != 0:
        # git's last lines are generic ("make sure ... the repository exists"); the cause
        # (ssh's, curl's) comes a line or two before them.
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise FetchFailed(" / ".join(lines[-5:]) or f"exit code {process.returncode}")
    return out.decode().strip()


def _curl_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def pinned_git_options(destination: GitDestination) -> tuple[list[str], dict[str, str]]:
    """The ``git -c`` options and environment that make git connect to the checked
    addresses only, over the URL's own protocol. Pure."""
    options = ["-c", "protocol.allow=never", "-c", f"protocol.{destination.scheme}.allow=always"]
    if destination.scheme == "https":
        addresses = ",".join(_curl_address(a) for a in destination.addresses)
        options += [
            "-c",
            f"http.curloptResolve={destination.host}:{destination.port}:{addresses}",
            # A redirect would reach a host nobody checked.
            "-c",
            "http.followRedirects=false",
        ]
        return options, {}
    command = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"HostName={destination.addresses[0]}",
        "-o",
        f"HostKeyAlias={destination.host}",
        # Options a user's ssh config might set that would connect elsewhere.
        "-o",
        "ProxyCommand=none",
        "-o",
        "ProxyJump=none",
    ]
    return options, {"GIT_SSH_COMMAND": shlex.join(command)}


async def fetch_commit(
    ref: GitRef,
    dest: Path,
    *,
    allow_file_urls: bool,
    allow_private: bool = False,
    timeout_s: float = 300.0,
    resolve: Resolver = resolve_host,
) -> str:
    """Check out ``ref`` of ``ref.url`` into ``dest`` (without ``.git``); its commit sha.

    :class:`PermanentError` when the URL is refused (``file://`` unless allowed; an
    address refused by the address policy unless ``allow_private``) or cannot be fetched.
    """
    options: list[str]
    env: dict[str, str] = {}
    if ref.url.startswith("file://"):
        if not allow_file_urls:
            raise PermanentError(
                f"git URL {ref.url!r} reads this server's disk; file:// URLs are not allowed here"
            )
        options = ["-c", "protocol.allow=never", "-c", "protocol.file.allow=always"]
    else:
        try:
            destination = await checked_git_destination(
                ref.url, allow_private=allow_private, resolve=resolve
            )
        except UnsafeDestination as exc:
            raise PermanentError(f"git URL {ref.url}: {exc}") from None
        options, env = pinned_git_options(destination)
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    try:
        await _git("init", "-q", cwd=dest, timeout_s=timeout_s)
        await _git(
            *options,
            "fetch",
            "-q",
            "--depth",
            "1",
            "--no-tags",
            ref.url,
            ref.ref,
            cwd=dest,
            timeout_s=timeout_s,
            env=env,
        )
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
    except FetchFailed as exc:
        log.warning("build.git.fetch_failed", url=ref.url, ref=ref.ref, reason=str(exc))
        # One answer whatever happened there; retrying is the user's call (resubmit).
        raise PermanentError(
            f"could not fetch {ref.ref!r} from {ref.url}: no git repository with that ref "
            "could be read there (it may not exist, refuse access, or not answer)"
        ) from None
    await asyncio.to_thread(shutil.rmtree, dest / ".git")
    return commit
