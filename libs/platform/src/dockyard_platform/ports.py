"""The launcher's ports: claimed before anything starts, and who holds one that is taken.

A second ``dockyard up`` on the ports of a running one must stop at once and say who holds
them, not start servers that die later. Who holds a port is read from ``/proc`` (Linux):
the listening socket's inode in ``/proc/net/tcp`` and ``tcp6``, then the processes with a
descriptor on it (only the user's own processes can be seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "PortTaken",
    "check_port_free",
    "claim_listening_socket",
    "listening_inodes",
    "port_holders",
    "wait_until_accepting",
]

_LISTEN = "0A"
"""The TCP state column of a listening socket in /proc/net/tcp."""


class PortTaken(RuntimeError):
    """Another process listens on a port the platform needs; the message says who."""

    def __init__(self, host: str, port: int, setting: str, holders: list[str]) -> None:
        self.host, self.port, self.holders = host, port, holders
        who = (
            ", ".join(holders) if holders else "another process (not one of yours: /proc hides it)"
        )
        super().__init__(
            f"{host}:{port} is already in use by {who}. Is another `dockyard up` running? "
            f"Stop it, or choose another port with {setting}."
        )


def listening_inodes(table: str, port: int) -> set[int]:
    """The inodes of sockets listening on ``port`` in a /proc/net/tcp(6) table. Pure."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        _, _, local_port = fields[1].rpartition(":")
        if int(local_port, 16) == port:
            found.add(int(fields[9]))
    return found


def port_holders(port: int, proc: Path = Path("/proc")) -> list[str]:
    """``python -m dockyard_api (pid 4242)`` for each process listening on ``port`` that
    /proc lets us see; empty when none is visible."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            inodes |= listening_inodes((proc / "net" / table).read_text(), port)
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders = []
    for entry in sorted(proc.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not entry.name.isdigit():
            continue
        if _links(entry) & wanted:
            holders.append(f"{_command_of(entry)} (pid {entry.name})")
    return holders


def _links(process: Path) -> set[str]:
    """What a process's descriptors point at; empty for another user's process."""
    links = set()
    try:
        descriptors = list((process / "fd").iterdir())
    except OSError:  # another user's process, or one that just ended
        return set()
    for descriptor in descriptors:
        # One closed meanwhile (the listing's own, in this process) is skipped.
        with contextlib.suppress(OSError):
            links.add(str(descriptor.readlink()))
    return links


def _command_of(process: Path) -> str:
    try:
        argv = (process / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "a process"
    words = [Path(argv[0].decode(errors="replace")).name] if argv and argv[0] else []
    words += [arg.decode(errors="replace") for arg in argv[1:4] if arg]
    return " ".join(words) or "a process"


def _taken(host: str, port: int, setting: str) -> PortTaken:
    return PortTaken(host, port, setting, port_holders(port))


def claim_listening_socket(
    host: str, port: int, setting: str, backlog: int = 1024
) -> socket.socket:
    """A socket bound to ``host:port`` and listening, for a child to inherit: connections
    wait in its backlog while that child restarts. :class:`PortTaken` if someone has it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR only (never SO_REUSEPORT): a port another process listens on, even with
    # SO_REUSEPORT, must be refused rather than shared.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _taken(host, port, setting) from exc
        raise
    return sock


def check_port_free(host: str, port: int, setting: str) -> None:
    """:class:`PortTaken` naming who holds ``host:port`` if a process listens there."""
    claim_listening_socket(host, port, setting, backlog=1).close()


async def wait_until_accepting(
    host: str, port: int, timeout_s: float, alive: Callable[[], bool]
) -> bool:
    """Whether ``host:port`` accepted a connection within ``timeout_s`` while ``alive()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline and alive():
        try:
            async with asyncio.timeout(0.5):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
