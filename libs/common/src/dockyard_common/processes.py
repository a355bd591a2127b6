"""Child processes that must not outlive the process that started them, and their ports."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys

__all__ = ["free_port", "stop_with_parent"]

_PR_SET_PDEATHSIG = 1
# Looked up here, not between fork and exec (where the child would load and look it up
# each time): that can deadlock when the parent has threads (asyncio's child watcher).
_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform == "linux" else None


def stop_with_parent() -> None:
    """``preexec_fn`` for a child: the kernel sends it SIGTERM when its parent dies (Linux).

    Elsewhere it does nothing; a clean shutdown still stops children explicitly.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
