"""The TCP sockets a process's network namespace listens on, read from ``/proc``.

Shared by the local driver (a replica in a namespace of its own) and the container driver (a
container on an engine of this machine): readiness is "the declared port listens", read from
the namespace's socket table, so no request is spent on a server that answers only one (the
standard library's ``wsgiref`` demo), and a replica that listens elsewhere says where.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Listening", "listening_ports", "listening_sockets", "parse_socket_table"]

_TCP_LISTEN = "0A"


@dataclass(frozen=True, order=True)
class Listening:
    """One listening TCP socket: its port and address (``0.0.0.0``, ``127.0.0.1``, ``::``)."""

    port: int
    address: str

    @property
    def loopback_only(self) -> bool:
        """Whether only the namespace itself can reach it (``127.0.0.1``, ``::1``)."""
        address = ipaddress.ip_address(self.address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def _address(hex_address: str) -> str:
    """``/proc/net/tcp*``'s address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_socket_table(text: str) -> set[Listening]:
    """The listening sockets of one ``/proc/<pid>/net/tcp`` or ``tcp6`` text. Pure."""
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _TCP_LISTEN:
            address, _, port = fields[1].rpartition(":")
            found.add(Listening(int(port, 16), _address(address)))
    return found


def listening_sockets(pid: int) -> list[Listening] | None:
    """What ``pid``'s network namespace listens on; None when its table cannot be read."""
    found: set[Listening] = set()
    read = False
    for name in ("tcp", "tcp6"):
        try:
            text = Path(f"/proc/{pid}/net/{name}").read_text()
        except OSError:
            continue
        read = True
        found |= parse_socket_table(text)
    return sorted(found) if read else None


def listening_ports(pid: int) -> list[int]:
    """The TCP ports listened on in ``pid``'s network namespace."""
    return sorted({socket.port for socket in listening_sockets(pid) or []})
