"""stop_with_parent: a child stops when the process that started it is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dockyard_common.runtime.processes import stop_with_parent

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


@pytest.fixture(params=["default", "handled"])
def parent_sigterm(request: pytest.FixtureRequest) -> Iterator[str]:
    """The parent's SIGTERM disposition: the default, or a handler of its own (as the
    router's parent and ``dockyard up`` have), which the child inherits until exec."""
    previous = signal.getsignal(signal.SIGTERM)
    if request.param == "handled":
        signal.signal(signal.SIGTERM, lambda *_: None)
    yield str(request.param)
    signal.signal(signal.SIGTERM, previous)


def test_a_child_whose_parent_is_already_gone_stops_itself(
    monkeypatch: pytest.MonkeyPatch, parent_sigterm: str
) -> None:
    # Between fork and preexec_fn the parent died: the child, reparented, sees another
    # parent process id than the one that forked it.
    monkeypatch.setattr(os, "getppid", lambda: 1)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], preexec_fn=stop_with_parent
    )
    monkeypatch.undo()
    assert child.wait(10) == -signal.SIGTERM, parent_sigterm


def test_a_child_whose_parent_is_there_runs() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "print('ran')"],
        preexec_fn=stop_with_parent,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert child.stdout == "ran\n"
