"""A consumer service's liveness file: touched again and again while its event loop turns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dockyard_common.runtime.lifecycle import in_background, keep_touching


async def test_a_liveness_file_is_touched_while_the_loop_turns(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    async with in_background(keep_touching(alive, every_s=0.01)):
        deadline = time.monotonic() + 5
        while not alive.exists():
            assert time.monotonic() < deadline, "the liveness file was never made"
            await asyncio.sleep(0.01)
        first = alive.stat().st_mtime_ns
        while alive.stat().st_mtime_ns == first:
            assert time.monotonic() < deadline, "the liveness file was touched only once"
            await asyncio.sleep(0.01)
