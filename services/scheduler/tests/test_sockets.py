"""Which sockets a namespace listens on, read from its /proc socket tables, and what a
container that listens elsewhere is told."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from dockyard_scheduler.drivers.container.replicas import (
    listens_reachably,
    not_listening_reason,
    socket_table_pid,
)
from dockyard_scheduler.drivers.sockets import Listening, listening_sockets, parse_socket_table

EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 (an address read, not bound)
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
TCP = HEADER + (
    "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
    "   1: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
    "   2: 0100007F:1F42 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0\n"
)
TCP6 = HEADER + (
    "   0: 00000000000000000000000000000000:1F43 00000000000000000000000000000000:0000 0A 0\n"
    "   1: 0000000000000000FFFF00000100007F:1F44 00000000000000000000000000000000:0000 0A 0\n"
    "   2: 00000000000000000000000001000000:1F45 00000000000000000000000000000000:0000 0A 0\n"
)


def test_only_listening_sockets_are_read_with_their_addresses() -> None:
    assert parse_socket_table(TCP) == {Listening(8000, EVERY_ADDRESS), Listening(8001, "127.0.0.1")}
    assert parse_socket_table(TCP6) == {
        Listening(8003, "::"),
        Listening(8004, str(ipaddress.ip_address("::ffff:127.0.0.1"))),
        Listening(8005, "::1"),
    }


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (EVERY_ADDRESS, False),
        ("127.0.0.1", True),
        ("::", False),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
    ],
)
def test_a_loopback_address_is_reachable_from_inside_only(address: str, loopback: bool) -> None:
    assert Listening(8000, address).loopback_only is loopback


def test_a_port_on_loopback_only_is_not_ready_and_the_reason_says_to_listen_on_every_address() -> (
    None
):
    sockets = [Listening(8000, "127.0.0.1")]
    assert not listens_reachably(sockets, 8000)
    reason = not_listening_reason(sockets, 8000, 30.0)
    assert "on 127.0.0.1 only" in reason and "listen on 0.0.0.0" in reason


def test_a_server_on_another_port_is_told_which() -> None:
    sockets = [Listening(8001, EVERY_ADDRESS)]
    assert not listens_reachably(sockets, 8000)
    reason = not_listening_reason(sockets, 8000, 30.0)
    assert "declared port 8000" in reason and "it listens on 8001 instead" in reason
    assert "it listens on no TCP port" in not_listening_reason([], 8000, 30.0)


def test_this_process_sockets_are_read_from_proc() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = listening_sockets(int(Path("/proc/self").resolve().name))
    assert found is not None and Listening(port, "127.0.0.1") in found


def test_a_pid_outside_the_container_is_not_taken_for_it() -> None:
    pid = int(Path("/proc/self").resolve().name)
    assert socket_table_pid(pid, "f" * 64) is None
    assert socket_table_pid(None, "f" * 64) is None
