"""The dependency layer: what the code's requirements file needs, installed from wheels only.

Valohai users keep a ``requirements-deployment.txt`` beside the ``requirements.txt`` of their
training code, and the deployment one wins when both exist. The packages are installed with
``pip install --target`` for the base image's Python and platform rather than the builder's,
from wheels only (a source build would run arbitrary code on the builder and need a
compiler), and the layer is cached by what determines it: the requirements, the Python
version, the platforms and where pip looks for packages.

The file is the user's and pip reads options from it (``--no-binary`` would undo wheels-only,
``-r /proc/self/environ`` would print the builder's environment, ``--index-url`` would fetch
from anywhere): only package requirements pass (names, extras, version specifiers, markers,
``--hash``), one per line, rewritten into a file of our own. Where packages come from is the
platform's setting, and pip runs isolated from the builder's configuration and environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from dockyard_common import InvalidInput, PermanentError, TransientError

__all__ = [
    "DEPS_DIR",
    "REQUIREMENTS_FILES",
    "DependencyTarget",
    "PackageIndex",
    "checked_requirements",
    "dependency_cache_key",
    "find_requirements",
    "install_dependencies",
    "python_version_of",
]

REQUIREMENTS_FILES = ("requirements-deployment.txt", "requirements.txt")
"""The requirements files the builder looks for at the code root, the first found wins."""

DEPS_DIR = "dockyard/deps"
"""Where the installed packages live in the image (on ``PYTHONPATH``)."""

MANYLINUX_X86_64 = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
"""Wheel platforms a glibc x86_64 base image (Debian bookworm's glibc 2.36) runs."""

_PYTHON_TAG = re.compile(r"(?:^|/)python:(\d+)\.(\d+)")

_SPECIFIER = r"(?:===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # the project name
    r"(?:\s*\[\s*[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\s*\])?"  # extras
    rf"(?:\s*\(?\s*{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*\s*\)?)?"  # versions
    r"(?:\s*;\s*[A-Za-z0-9_.'\" <>=!~()-]+)?"  # environment markers
    r"(?:\s+--hash=sha256:[0-9a-f]{64})*"
)

# pip takes a name ending like an archive for a file to install.
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|egg)$", re.IGNORECASE)

# pip's words for "the index did not answer", checked first: an index that is down also
# ends with "no matching distribution".
_UNREACHABLE = (
    "Retrying (Retry(",
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "timed out",
    "Temporary failure in name resolution",
    "ProxyError",
    "HTTP error 5",
)
# pip's words for "it cannot exist".
_NOT_INSTALLABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "ResolutionImpossible",
    "Invalid requirement",
    "is not a valid",
    "THESE PACKAGES DO NOT MATCH THE HASHES",
)


@dataclass(frozen=True)
class DependencyTarget:
    """The interpreter and platform the packages must run on."""

    python_version: str
    platforms: tuple[str, ...] = MANYLINUX_X86_64


@dataclass(frozen=True)
class PackageIndex:
    """Where pip finds packages: an index URL, extra wheel directories or pages, or both."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False


def find_requirements(code_root: Path) -> Path | None:
    """The requirements file of the code, ``requirements-deployment.txt`` first; None if none."""
    for name in REQUIREMENTS_FILES:
        candidate = code_root / name
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def python_version_of(base_image: str, default: str) -> str:
    """The ``major.minor`` Python of an official ``python:X.Y...`` image, else ``default``."""
    match = _PYTHON_TAG.search(base_image)
    return f"{match.group(1)}.{match.group(2)}" if match else default


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


def dependency_cache_key(requirements: bytes, target: DependencyTarget, index: PackageIndex) -> str:
    """The digest naming a dependency layer: same inputs, same layer, never installed twice."""
    material = "\0".join(
        [
            hashlib.sha256(requirements).hexdigest(),
            target.python_version,
            *target.platforms,
            index.index_url or "",
            *index.find_links,
            str(index.no_index),
        ]
    )
    return f"sha256:{hashlib.sha256(material.encode()).hexdigest()}"


def install_dependencies(
    requirements: Path,
    dest: Path,
    target: DependencyTarget,
    index: PackageIndex,
    *,
    timeout_s: float,
    retries: int = 5,
) -> None:
    """``pip install --target dest`` the requirements for ``target``; blocking.

    Raises :class:`PermanentError` when a requirement cannot be met from wheels (the message
    quotes pip and says what to do) and :class:`TransientError` when pip failed otherwise
    (an index that did not answer, say), so the build is retried.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--isolated",
        "--disable-pip-version-check",
        f"--retries={retries}",
        "--no-input",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        "--target",
        str(dest),
        "--requirement",
        str(requirements),
    ]
    for platform in target.platforms:
        command += ["--platform", platform]
    if index.index_url:
        command += ["--index-url", index.index_url]
    for link in index.find_links:
        command += ["--find-links", link]
    if index.no_index:
        command.append("--no-index")
    try:
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            command,
            cwd=_empty_directory(dest.parent / "pip-cwd"),
            env=_pip_environment(dest.parent),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"installing {requirements.name} took longer than {timeout_s:.0f} s", delay=30.0
        ) from None
    if result.returncode == 0:
        return
    tail = "\n".join(deque((result.stderr or result.stdout).strip().splitlines(), maxlen=6))
    if any(marker in result.stderr for marker in _UNREACHABLE):
        raise TransientError(f"the package index did not answer:\n{tail}", delay=30.0)
    if any(marker in result.stderr for marker in _NOT_INSTALLABLE):
        raise PermanentError(
            f"{requirements.name} cannot be installed from wheels for Python "
            f"{target.python_version} on linux x86_64 (only wheels are installed; pin a "
            f"version that publishes one, or use the docker build backend):\n{tail}"
        )
    raise TransientError(f"pip failed installing {requirements.name}:\n{tail}", delay=30.0)


def _pip_environment(home: Path) -> dict[str, str]:
    """pip's environment: none of the builder's settings or secrets, only the proxy to use."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE")
    }
    return dict(kept, PATH=os.defpath, HOME=str(home), LANG="C.UTF-8", PIP_CONFIG_FILE=os.devnull)


def _empty_directory(path: Path) -> Path:
    """A fresh empty directory: pip's working directory holds nothing it could pick up."""
    path.mkdir(parents=True, exist_ok=False)
    return path
