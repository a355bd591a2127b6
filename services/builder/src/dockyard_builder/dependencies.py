"""Dependency layers: the code's requirements installed, or downloaded, from wheels only.

For an image (container and Kubernetes targets) the packages are installed with ``pip
install --target`` for the base image's Python and platform rather than the builder's; for
local targets, which run on this machine's interpreter, they are downloaded as a wheelhouse
for that interpreter. Wheels only: a source build would run arbitrary code on the builder
and need a compiler. Each layer is cached by what determines it: the requirements, the
Python version, the platforms and where pip looks for packages.

Where packages come from is the platform's setting (the requirement lines are checked by
:mod:`~dockyard_builder.requirements`), and pip runs isolated from the builder's
configuration and environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard_common import PermanentError, TransientError

__all__ = [
    "DEPS_DIR",
    "DependencyTarget",
    "PackageIndex",
    "dependency_cache_key",
    "download_wheels",
    "install_dependencies",
    "unavailable_reason",
    "wheel_pins",
]

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

    Raises :class:`PermanentError` when a requirement cannot be met from wheels (naming the
    package, its pin and the interpreter) and :class:`TransientError` when pip failed
    otherwise (an index that did not answer, say), so the build is retried.
    """
    _run_pip(
        ["install", "--no-compile", "--target", str(dest)],
        requirements,
        target,
        index,
        timeout_s=timeout_s,
        retries=retries,
    )


def download_wheels(
    requirements: Path,
    dest: Path,
    target: DependencyTarget,
    index: PackageIndex,
    *,
    timeout_s: float,
    retries: int = 5,
) -> list[str]:
    """``pip download`` the wheels that meet the requirements for ``target`` into ``dest``.

    Returns the pins that install exactly them (``name==version``, sorted), for a
    ``requirements.txt`` beside the wheels. Errors as :func:`install_dependencies`.
    """
    _run_pip(
        ["download", "--dest", str(dest)],
        requirements,
        target,
        index,
        timeout_s=timeout_s,
        retries=retries,
    )
    return wheel_pins(path.name for path in dest.glob("*.whl"))


def wheel_pins(names: Iterable[str]) -> list[str]:
    """``name==version`` for each wheel file name (PEP 427), sorted. Pure."""
    pins = set()
    for name in names:
        parts = name.removesuffix(".whl").split("-")
        if len(parts) >= 5:
            pins.add(f"{parts[0].replace('_', '-').lower()}=={parts[1]}")
    return sorted(pins)


def unavailable_reason(pip_output: str, python_version: str) -> str | None:
    """What pip found no wheel for, in a person's words: the package, its pin, the interpreter.

    None when pip's output names no such requirement. Pure.
    """
    missing = re.search(r"No matching distribution found for (.+)$", pip_output, re.MULTILINE)
    if missing is None:
        return None
    requirement = missing.group(1).strip()
    parts = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;]*)", requirement)
    package = parts.group(1) if parts else requirement
    pin = (parts.group(3).strip() if parts else "") or "(any version)"
    offered = re.search(
        rf"satisfies the requirement {re.escape(package)}\b[^(\n]*\(from versions: ([^)]*)\)",
        pip_output,
        re.IGNORECASE,
    )
    versions = [v.strip() for v in offered.group(1).split(",")] if offered else []
    versions = [v for v in versions if v and v != "none"]
    if len(versions) > 6:
        versions = [*versions[:3], "...", *versions[-2:]]
    have = (
        f"versions of {package} with one: {', '.join(versions)}"
        if versions
        else f"no version of {package} has one"
    )
    return (
        f"{requirement}: no wheel of {package} {pin} for Python {python_version} on linux "
        f"x86_64 ({have}); pin a version that publishes a wheel for Python {python_version}, "
        "or name a base image whose Python has one"
    )


def _run_pip(
    action: list[str],
    requirements: Path,
    target: DependencyTarget,
    index: PackageIndex,
    *,
    timeout_s: float,
    retries: int,
) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        *action[:1],
        "--isolated",
        "--disable-pip-version-check",
        f"--retries={retries}",
        "--no-input",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        *action[1:],
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
    scratch = Path(tempfile.mkdtemp(dir=requirements.parent, prefix="pip-"))
    try:
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            command,
            cwd=_empty_directory(scratch / "cwd"),
            env=_pip_environment(scratch),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"installing {requirements.name} took longer than {timeout_s:.0f} s", delay=30.0
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode == 0:
        return
    tail = "\n".join(deque((result.stderr or result.stdout).strip().splitlines(), maxlen=6))
    if any(marker in result.stderr for marker in _UNREACHABLE):
        raise TransientError(f"the package index did not answer:\n{tail}", delay=30.0)
    reason = unavailable_reason(result.stderr, target.python_version)
    if reason is not None:
        raise PermanentError(f"{requirements.name} cannot be installed from wheels: {reason}")
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
