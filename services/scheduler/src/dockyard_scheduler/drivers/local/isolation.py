"""How a local replica is isolated: Linux user, network and mount namespaces, no root needed.

Each replica gets a network namespace of its own, so the port its command hard-codes (or
valohai.yaml's ``port``, 8000 by default) is free for it, however many replicas, versions and
targets of the endpoint run on this machine; the router reaches it through a Unix socket
that :mod:`~dockyard_scheduler.drivers.local.sandbox` forwards to that port. Its root is a
file system of its own: this machine's system directories and interpreter read-only, its
image tree, environment and home writable, nothing else (not the data directory, not the
platform, not anyone's home); it runs without capabilities, so it cannot change that. Where
slirp4netns is installed, it gives the namespace a way out to the network (not to this
machine's loopback). Where user namespaces are not allowed (a kernel setting, some container
runtimes), replicas listen on ``$PORT`` instead, and the endpoint's notes say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from dockyard_common import PermanentError
from dockyard_scheduler.drivers.local import sandbox
from dockyard_scheduler.drivers.local.environments import interpreter, uv_binary

__all__ = [
    "egress_command",
    "launcher_command",
    "namespaces_unavailable",
    "private_directory",
    "socket_directory",
    "system_paths",
]

_UNSHARE = [
    "unshare",
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    "--propagation",
    "private",
]
_SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys"]
"""What a replica sees of this machine, read-only, besides its interpreter: as a container
image's root would give it, without anyone's home, the data directory or the platform."""
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


def system_paths() -> list[str]:
    """This machine's directories a replica sees read-only: the system's, the interpreter's
    installation (``sys.base_prefix``, under a home directory with pyenv) and ``uv``."""
    paths = [*_SYSTEM, sys.base_prefix, uv_binary()]
    return [p for p in dict.fromkeys(paths) if os.path.lexists(p)]


def socket_directory(runtime_dir: Path) -> Path:
    """Where replicas' sockets go: under the runtime directory when its path is short enough
    for a socket's name, else a directory of this runtime's in the system's temp dir."""
    here = runtime_dir.resolve() / "sockets"
    if len(str(here)) + len("/0123456789abcdef.999.sock") <= _SUN_PATH_MAX:
        return here
    digest = hashlib.sha256(str(runtime_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dockyard-sockets-{digest}"


def private_directory(path: Path) -> Path:
    """``path`` made (mode 0700) or found, and refused unless it is a directory of ours that
    no one else may write in: in the system's temp dir another user could have made it
    first, to hand the router sockets of theirs."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    held = path.lstat()
    if not stat.S_ISDIR(held.st_mode) or held.st_uid != os.geteuid() or held.st_mode & 0o022:
        raise PermanentError(f"{path} is not a private directory of this user: not used")
    return path


def launcher_command(
    command: list[str],
    *,
    socket: Path,
    port: int,
    cwd: Path,
    root: Path,
    readonly: list[Path],
    writable: list[Path],
    overlays: list[tuple[Path, Path]],
    memory_bytes: int | None = None,
) -> list[str]:
    """The command that starts ``command`` in namespaces of its own, reached at ``socket``,
    in a root of its own built in the empty directory ``root``."""
    config = {
        "socket": str(socket),
        "port": port,
        "cwd": str(cwd.resolve()),
        "command": command,
        "root": str(root.resolve()),
        "readonly": [*system_paths(), *(str(p.resolve()) for p in readonly)],
        "writable": [str(p.resolve()) for p in writable],
        "overlays": [[str(p.resolve()), str(layer.resolve())] for p, layer in overlays],
        "egress": shutil.which("slirp4netns") is not None,
        "memory_bytes": memory_bytes,
    }
    return [*_UNSHARE, "--", interpreter(), "-I", sandbox.__file__, json.dumps(config)]
