"""The runner layer: Dockyard's WSGI runner and its HTTP server (standard library only).

Both ways an endpoint starts write Valohai's runtime file (``valohai-metadata.json``) in
the working directory before the server starts, from the document a driver passes in
:data:`~dockyard_common.valohai_metadata.VALOHAI_METADATA_ENV`: the runner itself for
``wsgi`` endpoints, and a line of ``sh`` before a ``server-command`` (which needs no Python
in the image).
"""

from __future__ import annotations

from pathlib import Path

from dockyard_builder.layers import LayerEntry
from dockyard_common.valohai_metadata import VALOHAI_METADATA_ENV, VALOHAI_METADATA_FILE

__all__ = [
    "RUNNER_DIR",
    "RUNNER_FILES",
    "runner_command",
    "runner_entries",
    "server_command",
]

RUNNER_DIR = "dockyard/runner"
"""Where the runner lives in the image (on ``PYTHONPATH``)."""

RUNNER_FILES = Path(__file__).with_name("runner_files")
"""The runner's sources: ``dockyard_runner.py`` and the server it uses, ``dockyard_server.py``."""

# Runs with the user's script as $0: writes the runtime file, then hands over to a shell of
# the script's own, exactly as `sh -c script` would run it (exec: the server gets signals).
_WRITE_THEN_RUN = (
    f'[ -z "${{{VALOHAI_METADATA_ENV}:-}}" ] || '
    f'printf "%s\\n" "${VALOHAI_METADATA_ENV}" > {VALOHAI_METADATA_FILE} || '
    f'echo "dockyard: could not write {VALOHAI_METADATA_FILE} in $(pwd)" >&2; '
    'exec sh -c "$0"'
)


def runner_entries() -> list[LayerEntry]:
    """The runner's sources, under :data:`RUNNER_DIR`."""
    return [
        LayerEntry(f"{RUNNER_DIR}/{name}", RUNNER_FILES / name)
        for name in ("dockyard_runner.py", "dockyard_server.py")
    ]


def runner_command(wsgi: str) -> list[str]:
    """The image command of a ``wsgi:`` endpoint."""
    return ["python", "-m", "dockyard_runner", wsgi]


def server_command(script: str) -> list[str]:
    """The image command of a ``server-command`` endpoint: the runtime file, then ``script``
    run by ``sh -c`` (the last element, as the user wrote it)."""
    return ["sh", "-c", _WRITE_THEN_RUN, script]
