"""The endpoint runner shipped in every image (runner_files/dockyard_runner.py)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import dockyard_builder

RUNNER = Path(dockyard_builder.__file__).parent / "runner_files" / "dockyard_runner.py"


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dockyard_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def queue_warning(depth: int) -> logging.LogRecord:
    return logging.LogRecord(
        "waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (depth,), None
    )


def test_queue_depth_warnings_become_one_line_per_interval() -> None:
    now = [100.0]
    summary = runner().QueueDepthSummary(interval_s=10.0, clock=lambda: now[0])

    first = queue_warning(1)
    assert summary.filter(first)
    assert first.getMessage() == "1 requests waited for a worker thread; deepest queue 1"

    # A burst under load: nothing written until the interval has passed ...
    assert not any(summary.filter(queue_warning(depth)) for depth in (3, 7, 2) * 100)
    now[0] += 10.0
    # ... then one line that says how many waited and how deep the queue got.
    line = queue_warning(1)
    assert summary.filter(line)
    assert line.getMessage() == "301 requests waited for a worker thread; deepest queue 7"
