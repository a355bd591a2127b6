"""The embedded platform's launcher, its pure parts and small shells: restart decisions,
who holds a port, the kept admin token, and reading a readiness answer."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import threading
from pathlib import Path

import pytest

from dockyard_platform.admin_token import AdminTokenUnreadable, admin_token_path, kept_admin_token
from dockyard_platform.ports import (
    PortTaken,
    claim_listening_socket,
    listening_inodes,
    port_holders,
)
from dockyard_platform.readiness import judge_answer
from dockyard_platform.supervision import (
    Exit,
    GiveUp,
    Restart,
    RestartHistory,
    RestartPolicy,
    decide_restart,
)
from dockyard_platform.supervisor import ProcessSpec, Restarted, Supervisor

POLICY = RestartPolicy(
    first_delay_s=0.1, max_delay_s=2.0, steady_s=30.0, crash_loop_restarts=3, crash_loop_window_s=60
)


def crash_repeatedly(times: int, every_s: float, ran_s: float) -> list[Restart | GiveUp]:
    history, now, decisions = RestartHistory(), 1000.0, []
    for _ in range(times):
        decision = decide_restart(POLICY, history, ran_s=ran_s, now=now)
        decisions.append(decision)
        if isinstance(decision, Restart):
            history = history.after(decision, now)
        now += every_s
    return decisions


def test_a_crashed_process_is_restarted_at_once_then_ever_later_while_it_keeps_crashing() -> None:
    decisions = crash_repeatedly(3, every_s=1.0, ran_s=1.0)
    assert decisions == [Restart(0.1, 1), Restart(0.2, 2), Restart(0.4, 3)]


def test_the_delay_never_passes_the_maximum() -> None:
    history = RestartHistory((), last_delay_s=1.5)
    assert decide_restart(POLICY, history, ran_s=1.0, now=0.0) == Restart(2.0, 1)


def test_a_process_that_ran_steadily_is_restarted_after_the_first_delay_again() -> None:
    history = RestartHistory((900.0,), last_delay_s=1.6)
    assert decide_restart(POLICY, history, ran_s=45.0, now=945.0) == Restart(0.1, 2)


def test_restarts_past_the_limit_within_the_window_are_a_crash_loop_said_so() -> None:
    decisions = crash_repeatedly(4, every_s=1.0, ran_s=0.5)
    assert isinstance(decisions[-1], GiveUp)
    assert "4 times within 60 s" in decisions[-1].reason
    assert "crash loop" in decisions[-1].reason


def test_restarts_spread_wider_than_the_window_never_give_up() -> None:
    decisions = crash_repeatedly(10, every_s=25.0, ran_s=20.0)
    assert all(isinstance(d, Restart) for d in decisions), decisions


def test_an_exit_says_its_code_or_its_signal() -> None:
    assert Exit.from_returncode(3).describe() == "exited with code 3"
    assert Exit.from_returncode(-signal.SIGKILL).describe() == "killed by SIGKILL"
    assert Exit.from_returncode(-9) == Exit(code=None, signal="SIGKILL")


def test_the_supervisor_restarts_a_killed_process_and_tells_of_it(tmp_path: Path) -> None:
    restarts: list[Restarted] = []
    clock = [0.0]
    supervisor = Supervisor(POLICY, restarts.append, clock=lambda: clock[0])
    spec = ProcessSpec("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    first = supervisor.start(spec)
    try:
        first.kill()
        first.wait()
        clock[0] = 5.0
        assert supervisor.check() is None  # noticed; the restart waits for its delay
        assert restarts == []
        clock[0] = 5.2
        assert supervisor.check() is None
        [restarted] = restarts
        assert (restarted.name, restarted.exited_pid, restarted.restarts) == (
            "sleeper",
            first.pid,
            1,
        )
        assert restarted.exit.signal == "SIGKILL" and restarted.ran_s == 5.0
        assert supervisor.process("sleeper").pid == restarted.pid != first.pid
        assert supervisor.process("sleeper").poll() is None
    finally:
        for process in supervisor.processes().values():
            process.kill()
            process.wait()


async def test_a_crash_loop_ends_supervision_with_the_process_s_last_lines(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(
        RestartPolicy(first_delay_s=0.01, crash_loop_restarts=2, crash_loop_window_s=60),
        lambda _: None,
    )
    script = "import sys; print('cannot open the config file'); sys.exit(3)"
    supervisor.start(ProcessSpec("broken", [sys.executable, "-c", script], tmp_path / "broken.log"))
    crash = await supervisor.watch(every_s=0.01)
    assert crash.name == "broken" and crash.exit.code == 3
    assert "cannot open the config file" in crash.describe()
    assert "3 times within 60 s" in crash.describe()


async def test_stopping_restarts_nothing(tmp_path: Path) -> None:
    restarts: list[Restarted] = []
    supervisor = Supervisor(POLICY, restarts.append)
    supervisor.start(ProcessSpec("sleeper", ["sleep", "60"], tmp_path / "sleeper.log"))
    await supervisor.stop(["sleeper"], grace_s=5.0)
    assert supervisor.process("sleeper").returncode == -signal.SIGTERM
    assert supervisor.check() is None and restarts == []


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
"""


def test_only_listening_sockets_on_the_port_are_found() -> None:
    assert listening_inodes(TCP_TABLE, 8080) == {4242}  # not the connection in state 01
    assert listening_inodes(TCP_TABLE, 8081) == {4444}
    assert listening_inodes(TCP_TABLE, 9999) == set()


def test_a_taken_port_is_refused_naming_the_process_that_holds_it() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert f"(pid {os.getpid()})" in " ".join(port_holders(port))
        with pytest.raises(PortTaken) as taken:
            claim_listening_socket("127.0.0.1", port, "DOCKYARD_API_PORT")
    message = str(taken.value)
    assert f"127.0.0.1:{port} is already in use by" in message
    assert f"(pid {os.getpid()})" in message and "DOCKYARD_API_PORT" in message


def test_a_port_shared_with_so_reuseport_is_refused_too() -> None:
    # A router binds its port with SO_REUSEPORT: a second launcher must not join it.
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(PortTaken):
            claim_listening_socket("127.0.0.1", held.getsockname()[1], "DOCKYARD_ROUTER_PORT")


def test_the_admin_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    token, made = kept_admin_token(tmp_path / "data")
    path = admin_token_path(tmp_path / "data")
    assert made and path == tmp_path / "data" / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kept_admin_token(tmp_path / "data") == (token, False)
    assert [p.name for p in path.parent.iterdir()] == ["admin-token"]  # no scratch left


def test_launchers_racing_on_one_data_directory_agree_on_one_token(tmp_path: Path) -> None:
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def launch() -> None:
        barrier.wait()
        results.append(kept_admin_token(tmp_path))

    threads = [threading.Thread(target=launch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({token for token, _ in results}) == 1
    assert sum(made for _, made in results) == 1


def test_a_loosened_token_file_is_made_private_again(tmp_path: Path) -> None:
    path = admin_token_path(tmp_path)
    path.write_text("kept-token\n")
    path.chmod(0o644)
    assert kept_admin_token(tmp_path) == ("kept-token", False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_token_file_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    path = admin_token_path(tmp_path)
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(AdminTokenUnreadable, match="delete it"):
        kept_admin_token(tmp_path)


def answer(ready: bool, instance: str, *, api: bool = True) -> bytes:
    parts = [
        {"name": "api", "ready": api, "detail": "ok" if api else "NATS away"},
        {"name": "router", "ready": ready, "detail": "ok" if ready else "no router yet"},
    ]
    return json.dumps({"ready": ready, "instance_id": instance, "parts": parts}).encode()


def test_an_answer_from_another_platform_is_never_taken_for_ours() -> None:
    judged = judge_answer(200, answer(True, "theirs"), "ours")
    assert judged is not None and not judged.ours


def test_our_platform_is_ready_only_when_it_says_so_with_200() -> None:
    waiting = judge_answer(503, answer(False, "ours"), "ours")
    assert waiting is not None and waiting.ours and waiting.api_ready and not waiting.ready
    assert waiting.waiting_for == "router: no router yet"
    ready = judge_answer(200, answer(True, "ours"), "ours")
    assert ready is not None and ready.ready


def test_an_api_without_the_platform_answer_is_no_answer() -> None:
    assert judge_answer(200, b'{"status": "ready"}', "ours") is None
    assert judge_answer(404, b"{}", "ours") is None
