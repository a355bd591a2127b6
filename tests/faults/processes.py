"""The processes of a running embedded platform, seen through /proc (Linux).

Services and servers are children of the launcher; endpoint replicas are process-group
leaders working inside the platform's unpacked images, whoever their parent is now (a
killed scheduler's replicas are adopted by the next one, not restarted).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

from tests.harness.procs import alive, parent_of, stat_fields

__all__ = ["argv_of", "replica_census", "service_pid"]


def argv_of(pid: int) -> list[str]:
    """A process's command line ([] if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is(name: str, argv: list[str]) -> bool:
    if not argv:
        return False
    program = Path(argv[0].split()[0]).name
    modules = {
        "api": "dockyard_api",
        "webhooks": "dockyard_api.webhooks",
        "builder": "dockyard_builder",
        "scheduler": "dockyard_scheduler",
        "router": "dockyard_router",
    }
    if name in modules:
        return argv[1:3] == ["-m", modules[name]]
    if name == "nats":
        return program == "nats-server"
    return program in ("redis-server", "valkey-server")


def service_pid(launcher: int, name: str) -> int | None:
    """The live process of service ``name`` that the launcher started, if any."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == launcher:
            pid = int(entry.name)
            if _is(name, argv_of(pid)) and alive(pid):
                return pid
    return None


def replica_census(data_dir: Path) -> Counter[tuple[str, str]]:
    """Replica processes running in ``data_dir``'s images, by (URL prefix, address)."""
    images = (data_dir / "runtime" / "images").resolve()
    found: Counter[tuple[str, str]] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, IndexError):
            fields = stat_fields(pid)
            if fields[0] == "Z" or int(fields[2]) != pid:  # the group leader only
                continue
            if not (entry / "cwd").readlink().resolve().is_relative_to(images):
                continue
            environ = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
            found[(environ.get("VH_DEFAULT_PREFIX", "?"), environ.get("HOST", "?"))] += 1
    return found
