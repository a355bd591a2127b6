"""``dockyard up``: hand this terminal to the embedded platform, a package of its own.

The command line is an HTTP client and installs without any server. The embedded platform
(``dockyard-platform``: NATS, Redis and the four services) is found by module name in this
command's own Python, never imported: this process becomes ``python -m dockyard_platform``
(``exec``), so Ctrl-C and SIGTERM reach the platform itself, and its exit code is the
command's. Without it, ``dockyard up`` says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["PLATFORM_MODULE", "platform_command", "run_up"]

PLATFORM_MODULE = "dockyard_platform"

NOT_INSTALLED = (
    "dockyard up: the embedded platform is not installed beside this command line.\n"
    "It is the package dockyard-platform (NATS, Redis and the four services); install it "
    "into the same environment as dockyard-cli, or in a checkout of Dockyard run `make run`.\n"
    "To use a platform running elsewhere, no install is needed: dockyard login --url URL "
    "--token TOKEN."
)


def platform_command() -> list[str] | None:
    """The command that runs the embedded platform with this Python; None when the
    platform package is not installed here. Looks the module up without importing it."""
    if importlib.util.find_spec(PLATFORM_MODULE) is None:
        return None
    return [sys.executable, "-m", PLATFORM_MODULE]


def run_up() -> int:
    """Become the embedded platform (never returns then); 1 with advice when it is missing."""
    command = platform_command()
    if command is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)  # noqa: S606 - this Python, a fixed module name
