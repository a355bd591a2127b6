"""Child processes that must not outlive the process that started them, and their ports."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

__all__ = ["free_port", "stop_with_parent"]

_PR_SET_PDEATHSIG = 1
# Looked up here, not between fork and exec (where the child would load and look it up
# each time): that can deadlock when the parent has threads (asyncio's child watcher).
_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform == "linux" else None


_forked_by = os.getpid()


def _note_forking_process() -> None:
    global _forked_by
    _forked_by = os.getpid()


# Runs in the parent before every fork, subprocess's with a preexec_fn included.
os.register_at_fork(before=_note_forking_process)


def stop_with_parent() -> None:
    """``preexec_fn`` for a child: the kernel sends it SIGTERM when its parent dies (Linux).

    A parent that died between the fork and this call would never send it: the child then
    stops itself. Elsewhere it does nothing; a clean shutdown still stops children
    explicitly.
    """
    if _PRCTL is not None:
        # The parent's own SIGTERM handler, inherited until exec, would swallow the signal.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != _forked_by:
            os.kill(os.getpid(), signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
