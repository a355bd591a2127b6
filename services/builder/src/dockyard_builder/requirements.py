"""What the code declares it needs: requirement lines from whichever file declares them.

Looked for at the code root, the first found wins:

1. ``requirements-deployment.txt``: Valohai's convention for what an endpoint needs beside
   the training code's ``requirements.txt``;
2. ``uv.lock`` (with its ``pyproject.toml``): the locked, non-dev dependencies, as ``uv
   export`` writes them (the project itself and workspace members are not installed), so
   that ``uv run`` finds every locked package installed;
3. ``requirements.txt``;
4. ``pyproject.toml`` without a lock: its ``[project].dependencies``.

The lines are the user's and pip reads options from them (``--no-binary`` would undo
wheels-only, ``-r /proc/self/environ`` would print the builder's environment, ``--index-url``
would fetch from anywhere): only package requirements pass (names, extras, version
specifiers, markers, ``--hash``), one per line, rewritten into a text of our own.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import uv

from dockyard_common import InvalidInput, PermanentError, TransientError

__all__ = [
    "REQUIREMENTS_FILES",
    "DeclaredRequirements",
    "checked_requirements",
    "declared_requirements",
    "find_requirements",
]

REQUIREMENTS_FILES = ("requirements-deployment.txt", "requirements.txt")
"""The requirements files the builder looks for at the code root, the first found wins."""

_SPECIFIER = r"(?:===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # the project name
    r"(?:\s*\[\s*[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\s*\])?"  # extras
    rf"(?:\s*\(?\s*{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*\s*\)?)?"  # versions
    r"(?:\s*;\s*[A-Za-z0-9_.'\" <>=!~()*+-]+)?"  # environment markers ('3.10.*')
    r"(?:\s+--hash=sha256:[0-9a-f]{64})*"
)

# pip takes a name ending like an archive for a file to install.
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|egg)$", re.IGNORECASE)

_UV_EXPORT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DeclaredRequirements:
    """The requirement lines the code declares, and the file they came from."""

    source: str
    """``requirements.txt``, ``uv.lock``, ``pyproject.toml``, ..."""
    text: str
    """Checked requirement lines, one per line (what the dependency layers are cached by)."""


def find_requirements(code_root: Path) -> Path | None:
    """The requirements file of the code, ``requirements-deployment.txt`` first; None if none."""
    for name in REQUIREMENTS_FILES:
        candidate = code_root / name
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def checked_requirements(text: str, name: str) -> str:
    """The requirements of ``text``, one per line, refusing anything but package requirements.

    Raises :class:`InvalidInput` naming the first line that is an option, a file, a path or
    a URL. Pure: the result is what the layer is cached by.
    """
    joined = re.sub(r"\\\r?\n", " ", text)
    accepted: list[str] = []
    for number, raw in enumerate(joined.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if not _REQUIREMENT.fullmatch(line) or _ARCHIVE.search(line.split()[0]):
            raise InvalidInput(
                f"{name} line {number}: {line[:120]!r} is not accepted: only package "
                "requirements are (a name, extras, version specifiers, markers, --hash); "
                "options, other files, paths and URLs are not, since where packages come "
                "from is the platform's setting"
            )
        accepted.append(re.sub(r"\s+", " ", line))
    return "".join(f"{line}\n" for line in accepted)


def declared_requirements(code_root: Path, scratch: Path) -> DeclaredRequirements | None:
    """The code's requirements (see the module's order); None when it declares none.

    ``scratch`` is an empty directory ``uv export`` may use for its home and cache. Raises
    :class:`InvalidInput` for a file that cannot be read as what it claims to be.
    """
    found = find_requirements(code_root)
    if found is not None and found.name == REQUIREMENTS_FILES[0]:
        return _from_file(found)
    lock, project = code_root / "uv.lock", code_root / "pyproject.toml"
    if _regular(lock) and _regular(project):
        text = checked_requirements(_uv_export(code_root, scratch), "uv.lock (as uv exports it)")
        return DeclaredRequirements("uv.lock", text) if text else None
    if found is not None:
        return _from_file(found)
    if _regular(project):
        text = _project_dependencies(project)
        return DeclaredRequirements("pyproject.toml", text) if text else None
    return None


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _from_file(path: Path) -> DeclaredRequirements | None:
    text = checked_requirements(path.read_text(encoding="utf-8", errors="replace"), path.name)
    return DeclaredRequirements(path.name, text) if text else None


def _project_dependencies(pyproject: Path) -> str:
    """``[project].dependencies`` of a ``pyproject.toml``, checked, one per line."""
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"pyproject.toml is not valid TOML: {exc}") from exc
    project = document.get("project")
    dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise InvalidInput("pyproject.toml: [project].dependencies must be a list of strings")
    # One requirement per item: a newline inside one would smuggle in a second line.
    if any("\n" in item or "\r" in item for item in dependencies):
        raise InvalidInput("pyproject.toml: a [project].dependencies item spans lines")
    return checked_requirements("\n".join(dependencies), "pyproject.toml [project].dependencies")


def _uv_export(code_root: Path, scratch: Path) -> str:
    """The lock's non-dev dependencies as requirement lines (``uv export``, offline)."""
    command = [
        uv.find_uv_bin(),
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-emit-workspace",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
        "--no-config",
        "--offline",
        "--format",
        "requirements.txt",
        "--directory",
        str(code_root),
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": os.defpath,
        "HOME": str(scratch),
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": str(scratch / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
    }
    try:
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            command,
            cwd=scratch,
            env=environment,
            capture_output=True,
            text=True,
            timeout=_UV_EXPORT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"uv export of uv.lock took longer than {_UV_EXPORT_TIMEOUT_S:.0f} s", delay=30.0
        ) from None
    except OSError as exc:  # the uv binary is missing or cannot run: the install is broken
        raise PermanentError(f"could not run uv to read uv.lock: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(deque(result.stderr.strip().splitlines(), maxlen=6))
        raise InvalidInput(f"uv.lock could not be read with its pyproject.toml:\n{tail}")
    return result.stdout
