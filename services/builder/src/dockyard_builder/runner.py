"""The runner layer: Dockyard's WSGI runner and the waitress server it uses."""

from __future__ import annotations

from pathlib import Path

import waitress

from dockyard_builder.layers import LayerEntry

__all__ = ["RUNNER_DIR", "runner_command", "runner_entries"]

RUNNER_DIR = "dockyard/runner"
"""Where the runner lives in the image (on ``PYTHONPATH``)."""

_RUNNER_SCRIPT = Path(__file__).with_name("runner_files") / "dockyard_runner.py"


def runner_entries() -> list[LayerEntry]:
    """The runner script and waitress's Python sources, under :data:`RUNNER_DIR`."""
    entries = [LayerEntry(f"{RUNNER_DIR}/dockyard_runner.py", _RUNNER_SCRIPT)]
    package = Path(waitress.__file__).parent
    for path in sorted(package.rglob("*.py")):
        if "tests" in path.relative_to(package).parts:
            continue
        entries.append(
            LayerEntry(f"{RUNNER_DIR}/waitress/{path.relative_to(package).as_posix()}", path)
        )
    return entries


def runner_command(wsgi: str) -> list[str]:
    """The image command of a ``wsgi:`` endpoint."""
    return ["python", "-m", "dockyard_runner", wsgi]
