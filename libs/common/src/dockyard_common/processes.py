"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys

__all__ = ["stop_with_parent"]

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """``preexec_fn`` for a child: the kernel sends it SIGTERM when its parent dies (Linux).

    Elsewhere it does nothing; a clean shutdown still stops children explicitly.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
