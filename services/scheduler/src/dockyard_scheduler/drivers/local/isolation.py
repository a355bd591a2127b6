"""How a local replica is isolated: Linux user, network and mount namespaces, no root needed.

Each replica gets a network namespace of its own, so the port its command hard-codes (or
valohai.yaml's ``port``, 8000 by default) is free for it, however many replicas, versions and
targets of the endpoint run on this machine; the router reaches it through a Unix socket
that :mod:`~dockyard_scheduler.drivers.local.sandbox` forwards to that port. Its mount
namespace shows the platform's install read-only and the data directory empty but for the
replica's own image tree, environment and home. Where slirp4netns is installed, it gives
the namespace a way out to the network (not to this machine's loopback). Where user
namespaces are not allowed (a kernel setting, some container runtimes), replicas listen on
``$PORT`` instead, and the endpoint's notes say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dockyard_scheduler.drivers.local import sandbox
from dockyard_scheduler.drivers.local.environments import interpreter

__all__ = [
    "egress_command",
    "launcher_command",
    "namespaces_unavailable",
    "protected_paths",
    "socket_directory",
]

_UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private"]
_SUN_PATH_MAX = 107
"""A Unix socket's path has 108 bytes, its terminating NUL included."""


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why replicas cannot have namespaces of their own here, or None when they can."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv
            [*_UNSHARE, "--", "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot run: {exc}"
    if done.returncode != 0:
        return done.stderr.strip() or f"unshare exited with code {done.returncode}"
    return None


def egress_command(pid: int, exit_fd: int) -> list[str] | None:
    """What gives the network namespace of ``pid`` a way out (NAT, no access to this
    machine's loopback, where the platform's own services listen); None without
    slirp4netns, and then replicas reach nothing beyond their own loopback."""
    helper = shutil.which("slirp4netns")
    if helper is None:
        return None
    options = ["--configure", "--mtu=65520", "--disable-host-loopback", f"--exit-fd={exit_fd}"]
    return [helper, *options, str(pid), "tap0"]


def protected_paths() -> list[str]:
    """What a replica sees read-only: the platform's environment, its code, the interpreter's."""
    paths = {Path(sys.prefix), Path(sys.base_prefix)}
    paths.update(Path(entry) for entry in sys.path if entry and Path(entry).is_dir())
    resolved = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        if path != Path("/") and not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return [str(p) for p in kept]


def socket_directory(runtime_dir: Path) -> Path:
    """Where replicas' sockets go: under the runtime directory when its path is short enough
    for a socket's name, else a directory of this runtime's in the system's temp dir."""
    here = runtime_dir.resolve() / "sockets"
    if len(str(here)) + len("/0123456789abcdef.999.sock") <= _SUN_PATH_MAX:
        return here
    digest = hashlib.sha256(str(runtime_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dockyard-sockets-{digest}"


def launcher_command(
    command: list[str],
    *,
    socket: Path,
    port: int,
    cwd: Path,
    hide: list[Path],
    expose: list[tuple[Path, bool]],
    memory_bytes: int | None = None,
) -> list[str]:
    """The command that starts ``command`` in namespaces of its own, reached at ``socket``."""
    config = {
        "socket": str(socket),
        "port": port,
        "cwd": str(cwd),
        "command": command,
        "readonly": protected_paths(),
        "hide": [str(p) for p in hide],
        "expose": [[str(p), writable] for p, writable in expose],
        "egress": shutil.which("slirp4netns") is not None,
        "memory_bytes": memory_bytes,
    }
    return [*_UNSHARE, "--", interpreter(), "-I", sandbox.__file__, json.dumps(config)]
