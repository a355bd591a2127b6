"""The process shell of supervision: start processes, notice one that ended, start it again.

The decisions (after how long, and when to give up) are :func:`decide_restart`'s; this
module spawns, polls and signals. Processes are polled (``Popen.poll``) a few times a
second from the launcher's event loop: a handful of children, and no child watcher thread
that a fork could catch holding a lock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard_common import get_logger
from dockyard_common.runtime.processes import stop_with_parent
from dockyard_platform.supervision import (
    Exit,
    GiveUp,
    RestartHistory,
    RestartPolicy,
    decide_restart,
)

__all__ = ["CrashLoop", "ProcessSpec", "Restarted", "Supervisor", "last_lines"]

log = get_logger(__name__)

_TAIL_BYTES = 16 * 1024


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one supervised process, the same way every time."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    pass_fds: tuple[int, ...] = ()


@dataclass(frozen=True)
class Restarted:
    """A process ended on its own and was started again."""

    name: str
    exited_pid: int
    pid: int
    exit: Exit
    ran_s: float
    restarts: int
    """Restarts of this process since supervision began."""


@dataclass(frozen=True)
class CrashLoop:
    """The supervisor gave up on a process: which, why, and its last log lines."""

    name: str
    exit: Exit
    reason: str
    last_lines: str

    def describe(self) -> str:
        """What a person reads when the platform stops because of it."""
        return (
            f"{self.name} {self.exit.describe()}; {self.reason}. Its last log lines:\n"
            f"{self.last_lines or '(none)'}"
        )


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    started_at: float
    history: RestartHistory = field(default_factory=RestartHistory)
    restarts: int = 0
    due: tuple[float, Exit, int, float] | None = None
    """A restart waiting for its delay: when, how it ended, its pid, how long it ran."""


class Supervisor:
    """Starts processes and keeps them running until :meth:`stop`; calls ``on_restart`` for
    each restart and reports a crash loop from :meth:`check` or :meth:`watch`."""

    def __init__(
        self,
        policy: RestartPolicy,
        on_restart: Callable[[Restarted], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._on_restart = on_restart
        self._clock = clock
        self._children: dict[str, _Child] = {}
        self._stopping = False

    def start(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        """Start ``spec`` and supervise it from now on."""
        process = _spawn(spec)
        self._children[spec.name] = _Child(spec, process, self._clock())
        # Routine, and the banner names what runs: a line each only when asked (debug).
        log.debug("platform.service.started", service=spec.name, pid=process.pid)
        return process

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The current process of ``name`` (a new one after each restart)."""
        return self._children[name].process

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every supervised process by name."""
        return {name: child.process for name, child in self._children.items()}

    def check(self) -> CrashLoop | None:
        """Notice processes that ended, restart those whose delay is over; a crash loop
        (the first found) ends supervision."""
        if self._stopping:
            return None
        now = self._clock()
        for name, child in self._children.items():
            if child.due is None and (code := child.process.poll()) is not None:
                exited, ran_s = Exit.from_returncode(code), now - child.started_at
                decision = decide_restart(self._policy, child.history, ran_s=ran_s, now=now)
                if isinstance(decision, GiveUp):
                    log.error(
                        "platform.service.crash_loop",
                        service=name,
                        exit=exited.describe(),
                        reason=decision.reason,
                    )
                    return CrashLoop(name, exited, decision.reason, last_lines(child.spec.log_path))
                log.warning(
                    "platform.service.exited",
                    service=name,
                    pid=child.process.pid,
                    exit=exited.describe(),
                    ran_s=round(ran_s, 3),
                    restart_in_s=decision.delay_s,
                )
                child.history = child.history.after(decision, now)
                child.due = (now + decision.delay_s, exited, child.process.pid, ran_s)
            if child.due is not None and now >= child.due[0]:
                self._restart(child, child.due)
        return None

    def _restart(self, child: _Child, due: tuple[float, Exit, int, float]) -> None:
        _, exited, exited_pid, ran_s = due
        child.process = _spawn(child.spec)
        child.started_at, child.due = self._clock(), None
        child.restarts += 1
        restarted = Restarted(
            child.spec.name, exited_pid, child.process.pid, exited, ran_s, child.restarts
        )
        log.warning(
            "platform.service.restarted",
            service=restarted.name,
            pid=restarted.pid,
            exited_pid=exited_pid,
            exit=exited.describe(),
            restarts=restarted.restarts,
        )
        self._on_restart(restarted)

    async def watch(self, every_s: float = 0.05) -> CrashLoop:
        """Check every ``every_s`` until a crash loop (cancel it to end supervision)."""
        # Polled (see the module's docstring): no child watcher to wait on.
        while (crash := self.check()) is None:  # noqa: ASYNC110
            await asyncio.sleep(every_s)
        return crash

    async def stop(self, names: Iterable[str], grace_s: float, forced_grace_s: float = 0.0) -> None:
        """Stop these processes: SIGTERM, and SIGTERM again after ``grace_s`` if
        ``forced_grace_s`` (a service stops at once on a second signal), SIGKILL what is
        left. No restart happens from the first call on."""
        self._stopping = True
        processes = [self._children[n].process for n in names if n in self._children]
        for wait_s in (grace_s, forced_grace_s) if forced_grace_s else (grace_s,):
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = self._clock() + wait_s
            while any(p.poll() is None for p in processes) and self._clock() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _spawn(spec: ProcessSpec) -> subprocess.Popen[bytes]:
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as log_file:
        return subprocess.Popen(  # noqa: S603 - our own modules and located server binaries
            spec.command,
            env=spec.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=spec.pass_fds,
            preexec_fn=stop_with_parent,
            # Its own session: a terminal's Ctrl-C reaches the launcher alone, which stops
            # the services in order.
            start_new_session=True,
        )


def last_lines(path: Path, count: int = 20) -> str:
    """The last ``count`` lines of a log file (its end only is read)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(tail.decode("utf-8", errors="replace").splitlines()[-count:])
