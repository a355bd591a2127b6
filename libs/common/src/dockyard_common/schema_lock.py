"""Pinning the shape of every event type's data per schema version.

The lock file maps each event type to ``{version: fingerprint}``; a fingerprint is the
sha256 of the type's JSON schema with descriptions and titles left out (wording is not
shape). A version, once locked, never changes: a new shape needs a new version. Pure
except :func:`read_lock` and :func:`write_lock`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dockyard_common.event_versions import schema_version
from dockyard_common.events import EVENT_DATA

__all__ = [
    "DEFAULT_LOCK",
    "UPDATE_COMMAND",
    "fingerprint",
    "lock_problems",
    "read_lock",
    "updated_lock",
    "write_lock",
]

Lock = dict[str, dict[str, str]]

DEFAULT_LOCK = Path(__file__).parents[2] / "tests" / "event_schemas.lock.json"
UPDATE_COMMAND = "uv run python -m dockyard_common.catalogue --update-lock"
_WORDING = {"description", "title", "examples"}


def _shape(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in _WORDING}
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    return schema


def fingerprint(event_type: str) -> str:
    """The fingerprint of the current shape of ``event_type``'s data."""
    schema = EVENT_DATA[event_type].model_json_schema(mode="serialization")
    canonical = json.dumps(_shape(schema), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def lock_problems(lock: Lock) -> list[str]:
    """What differs between the code and the lock, each with what to do about it."""
    problems: list[str] = []
    for event_type in sorted(EVENT_DATA):
        version = str(schema_version(event_type))
        locked = lock.get(event_type, {}).get(version)
        if locked is None:
            problems.append(
                f"{event_type} v{version} is not in the lock yet: run `{UPDATE_COMMAND}`"
            )
        elif locked != fingerprint(event_type):
            problems.append(
                f"{event_type}'s data changed shape but is still v{version}: subscribers "
                f"would get a new shape under an old version. Bump it in "
                f"dockyard_common/event_versions.py, then run `{UPDATE_COMMAND}` (a "
                "change that only adds an optional field needs the bump too)"
            )
    return problems


def updated_lock(lock: Lock) -> Lock:
    """``lock`` with the current version of each type added; locked versions are kept."""
    updated = {event_type: dict(versions) for event_type, versions in lock.items()}
    for event_type in sorted(EVENT_DATA):
        versions = updated.setdefault(event_type, {})
        versions.setdefault(str(schema_version(event_type)), fingerprint(event_type))
    return updated


def read_lock(path: Path = DEFAULT_LOCK) -> Lock:
    """The lock file's content (empty when there is none)."""
    if not path.exists():
        return {}
    lock: Lock = json.loads(path.read_text())
    return lock


def write_lock(lock: Lock, path: Path = DEFAULT_LOCK) -> None:
    """Write the lock file, sorted, one entry a line."""
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
