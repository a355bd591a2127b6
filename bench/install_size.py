"""What `make run`, `make install` and the CLI alone put on disk, and what a first install
downloads.

    .venv/bin/python bench/install_size.py      # a few seconds with a warm uv cache

Each environment is made afresh in a temporary directory with the Makefile's own `uv sync`
flags, or for the CLI alone `uv sync --package dockyard-cli` (packages come from uv's cache
where it holds them, else from PyPI), then measured:

- on disk: the bytes its files occupy (each hard link counted once), and its distributions;
- download: the sum of the sizes uv.lock records for the wheels of the installed
  distributions (for each, the wheel whose tags match the tags it was installed with), which
  is what a machine with an empty cache fetches.

Which uv: ``$UV`` (``make bench`` passes the Makefile's), else ``uv`` on PATH, else the one
``make uv`` puts in ``.tools/``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROFILES = {
    "make run": ["--all-packages", "--no-dev", "--group", "examples"],
    "make run without the examples' training (--no-dev)": ["--all-packages", "--no-dev"],
    "make install (everything)": ["--all-packages"],
    # What the user of a platform running elsewhere installs: the HTTP command line.
    "the CLI alone (dockyard-cli)": ["--package", "dockyard-cli", "--no-dev", "--no-editable"],
}


@dataclass
class Measured:
    profile: str
    disk_bytes: int
    distributions: int
    download_bytes: int
    not_in_lock: list[str]


def uv_command() -> list[str]:
    """The uv to run, as words."""
    named = os.environ.get("UV")
    if named:
        return shlex.split(named)
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise SystemExit("no uv: run `make uv`, or set UV")
    return [found]


def disk_bytes(root: Path) -> int:
    """Bytes allocated to the files under ``root``, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def expanded_tags(tag: str) -> set[str]:
    """``py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64`` → every single tag it names."""
    python, abi, platform = tag.split("-")
    return {
        f"{p}-{a}-{pl}"
        for p in python.split(".")
        for a in abi.split(".")
        for pl in platform.split(".")
    }


def wheel_tags(url: str) -> set[str]:
    """The tags of a wheel file name (its last three dash-separated parts)."""
    stem = url.rsplit("/", 1)[-1].removesuffix(".whl")
    return expanded_tags("-".join(stem.split("-")[-3:]))


def locked_files(lock: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    """(name, version) → the package entry of uv.lock."""
    packages = lock.get("package", [])
    assert isinstance(packages, list)
    return {(normalized(p["name"]), str(p.get("version"))): p for p in packages}


def download_bytes(site: Path, lock: dict[str, object]) -> tuple[int, int, list[str]]:
    """(bytes a cold install downloads, distributions, installed ones uv.lock has no file for)."""
    locked = locked_files(lock)
    total = 0
    count = 0
    missing: list[str] = []
    for info in sorted(site.glob("*.dist-info")):
        count += 1
        metadata = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, re.MULTILINE)
        version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
        if not name or not version:
            missing.append(info.name)
            continue
        package = locked.get((normalized(name.group(1)), version.group(1).strip()))
        wheel = info / "WHEEL"
        installed = set()
        if wheel.exists():
            for line in wheel.read_text().splitlines():
                if line.startswith("Tag: "):
                    installed |= expanded_tags(line.removeprefix("Tag: ").strip())
        if package is None:
            missing.append(f"{name.group(1)} {version.group(1)}")
            continue
        source = package.get("source")
        if isinstance(source, dict) and ("editable" in source or "virtual" in source):
            continue  # the workspace's own packages: nothing to download
        wheels = package.get("wheels") or []
        assert isinstance(wheels, list)
        matching = [w for w in wheels if wheel_tags(str(w["url"])) & installed]
        if matching:
            total += int(matching[0].get("size", 0))
        elif isinstance(package.get("sdist"), dict):
            total += int(package["sdist"].get("size", 0))  # type: ignore[index]
        else:
            missing.append(f"{name.group(1)} {version.group(1)}")
    return total, count, missing


def measure(profile: str, flags: list[str], lock: dict[str, object]) -> Measured:
    with tempfile.TemporaryDirectory(prefix="dockyard-install-") as scratch:
        venv = Path(scratch) / "venv"
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
        command = [*uv_command(), "sync", "--frozen", *flags, "--quiet"]
        subprocess.run(command, cwd=REPO, env=env, check=True)
        [site] = list(venv.glob("lib/python*/site-packages"))
        download, count, missing = download_bytes(site, lock)
        return Measured(profile, disk_bytes(venv), count, download, missing)


def mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MiB"


def main() -> int:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    results = [measure(profile, flags, lock) for profile, flags in PROFILES.items()]
    print("environment                                          on disk   download  dists")
    for r in results:
        sizes = f"{mib(r.disk_bytes):>8} {mib(r.download_bytes):>9}"
        print(f"{r.profile:<52} {sizes} {r.distributions:>6}")
        if r.not_in_lock:
            print(f"  not counted (no file in uv.lock): {', '.join(r.not_in_lock)}")
    print(
        json.dumps(
            {
                "bench": "install_size",
                "python": sys.version.split()[0],
                **{
                    r.profile: {
                        "disk_bytes": r.disk_bytes,
                        "download_bytes": r.download_bytes,
                        "distributions": r.distributions,
                    }
                    for r in results
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
