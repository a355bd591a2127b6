"""The local driver cleans up after a scheduler that was killed before it could."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from dockyard_common import EndpointState
from dockyard_scheduler.drivers.local import LocalDriver
from dockyard_scheduler.settings import SchedulerSettings


async def _ignore(_: EndpointState) -> None:
    return None


def _group(cwd: Path) -> subprocess.Popen[bytes]:
    """A process group like a replica's: a shell with a grandchild."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], cwd=cwd, start_new_session=True)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_leftover_replica_groups_are_killed_but_nothing_else(tmp_path: Path) -> None:
    settings = SchedulerSettings(data_dir=tmp_path)
    ours = _group(settings.runtime_dir / "images" / "abc" / "app")
    stranger = _group(tmp_path / "elsewhere")
    records = settings.runtime_dir / "process-groups"
    records.mkdir(parents=True)
    (records / "ours.pgid").write_text(str(ours.pid))
    (records / "stranger.pgid").write_text(str(stranger.pid))
    (records / "gone.pgid").write_text("999999")
    try:
        time.sleep(0.1)  # let the shells start their grandchildren
        assert LocalDriver(settings, _ignore).reap_leftovers() == 1
        ours.wait(5)
        deadline = time.monotonic() + 5
        while _alive(ours.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(ours.pid), "the grandchild of the leftover group survived"
        assert _alive(stranger.pid)
        assert list(records.iterdir()) == []
    finally:
        for process in (ours, stranger):
            if _alive(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
