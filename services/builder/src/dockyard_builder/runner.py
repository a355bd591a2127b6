"""The runner layer: Dockyard's WSGI runner and its HTTP server (standard library only)."""

from __future__ import annotations

from pathlib import Path

from dockyard_builder.layers import LayerEntry

__all__ = ["RUNNER_DIR", "RUNNER_FILES", "runner_command", "runner_entries"]

RUNNER_DIR = "dockyard/runner"
"""Where the runner lives in the image (on ``PYTHONPATH``)."""

RUNNER_FILES = Path(__file__).with_name("runner_files")
"""The runner's sources: ``dockyard_runner.py`` and the server it uses, ``dockyard_server.py``."""


def runner_entries() -> list[LayerEntry]:
    """The runner's sources, under :data:`RUNNER_DIR`."""
    return [
        LayerEntry(f"{RUNNER_DIR}/{name}", RUNNER_FILES / name)
        for name in ("dockyard_runner.py", "dockyard_server.py")
    ]


def runner_command(wsgi: str) -> list[str]:
    """The image command of a ``wsgi:`` endpoint."""
    return ["python", "-m", "dockyard_runner", wsgi]
