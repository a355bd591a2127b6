"""A local replica's launcher, run inside the replica's own user, network and mount namespaces.

The local driver starts ``unshare --user --map-root-user --net --mount -- python -I
sandbox.py <config>``: this file is a script, standard library only, run by the target's
interpreter (never the platform's environment). Inside the namespaces it

1. brings the loopback interface up, so the server listens on its declared port (8000, or
   whatever its command hard-codes, 80 included) on 0.0.0.0 or 127.0.0.1 without meeting any
   other replica;
2. binds the replica's Unix socket (a path outside: sockets ignore network namespaces), but
   listens on it only once the server listens on the declared port, so that a connection to
   the socket is the readiness check, on the declared port;
3. pivots into a root of its own (``root``, an empty directory made a tmpfs) holding only
   what is named: the ``readonly`` paths (system directories, the interpreter, ``uv``, shared
   dependencies), the ``writable`` ones (its home), the ``overlays`` (its image tree and its
   version's environment, each the replica's own copy: what it writes goes to a layer of its
   own, as in a container), ``/proc``, a few devices and a private ``/tmp``; the old root
   is detached;
4. waits for the network when ``egress`` is set (slirp4netns, which the driver starts outside
   the namespace, gives it a NATed interface that cannot reach this machine's loopback);
5. runs the server's command as its child without any capability (so it cannot undo the
   mounts), with ``no_new_privs``, and with a memory limit when asked (``memory_bytes``:
   RLIMIT_DATA per process, what a machine without a writable cgroup v2 offers);
6. forwards each connection of the socket to the declared port, byte for byte, until the
   server exits; then exits as the server did (its code, or the signal that killed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC = 32, 4096, 16384
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME, _MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP = 38, 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    _loopback_up()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = config["socket"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    _unprivileged_ports()  # before the root: its /proc is read-only
    _enter_root(config["root"], config["readonly"], config["writable"], config["overlays"])
    # Where the server works, at the path it has outside too: /proc/<pid>/cwd tells the
    # scheduler (and a person) which image a launcher serves.
    os.chdir(config["cwd"])
    if config.get("egress") and not _wait_for_route(5.0):
        print("dockyard: no network beyond loopback (slirp4netns did not come up)", flush=True)
    limit = config.get("memory_bytes")
    server = subprocess.Popen(  # noqa: S603 - the endpoint's own command
        config["command"],
        cwd=config["cwd"],
        preexec_fn=lambda: _no_privileges(int(limit) if limit else None),
    )
    # The driver stops a replica by signalling its whole process group, the server
    # included: nothing to pass on, but a handler (not SIG_IGN, which the server would
    # inherit) keeps this process until the server has gone.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    port = int(config["port"])
    if _wait_listening(server, port):
        listener.listen(1024)
        listener.setblocking(False)
        asyncio.run(_forward(listener, port, server))
    code = server.wait()
    if code < 0:  # killed by a signal: die of the same one, so the driver reads it
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _wait_for_route(timeout_s: float) -> bool:
    """Whether a default route appears (slirp4netns, started from outside, configured tap0)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open("/proc/self/net/route") as routes:
            if any(line.split()[1:2] == ["00000000"] for line in routes.readlines()[1:]):
                return True
        time.sleep(0.01)
    return False


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mount = libc.mount
    mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    mount.restype = ctypes.c_int

    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    if mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source} on {target}: {os.strerror(error)}")


def _locked_flags(path: str) -> int:
    """The flags a remount inside a user namespace must keep (the kernel locks them)."""
    have = os.statvfs(path).f_flag
    flags = 0
    for st, ms in (
        (os.ST_NOSUID, _MS_NOSUID),
        (os.ST_NODEV, _MS_NODEV),
        (os.ST_NOEXEC, _MS_NOEXEC),
    ):
        flags |= ms if have & st else 0
    if have & os.ST_NOATIME:
        flags |= _MS_NOATIME
    elif have & os.ST_RELATIME:
        flags |= _MS_RELATIME
    else:
        flags |= _MS_STRICTATIME
    return flags | (_MS_NODIRATIME if have & os.ST_NODIRATIME else 0)


def _read_only(path: str) -> None:
    _mount(path, path, None, _MS_BIND | _MS_REC)
    _mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _locked_flags(path))


def _place(root: str, path: str, writable: bool) -> None:
    """``path`` of this machine at the same path under ``root``: a symlink as a symlink, a
    file or a directory bound (read-only unless ``writable``)."""
    inside = root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if not os.path.lexists(inside):
            os.symlink(os.readlink(path), inside)
        return
    if os.path.isdir(path):
        os.makedirs(inside, exist_ok=True)
    elif os.path.exists(path):
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        Path(inside).touch()
    else:
        return
    _mount(path, inside, None, _MS_BIND | _MS_REC)
    if not writable:
        _mount(None, inside, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _locked_flags(inside))


def _overlay(root: str, path: str, layer: str) -> None:
    """``path`` under ``root`` as the replica's own copy: what it writes goes into ``layer``
    (its upper directory), never into ``path``, which its sibling replicas share."""
    inside = root + path
    os.makedirs(inside, exist_ok=True)
    os.makedirs(f"{layer}/upper", exist_ok=True)
    os.makedirs(f"{layer}/work", exist_ok=True)
    options = f"lowerdir={path},upperdir={layer}/upper,workdir={layer}/work"
    _mount("overlay", inside, "overlay", _MS_NOSUID | _MS_NODEV, options)


def _enter_root(
    root: str, readonly: list[str], writable: list[str], overlays: list[list[str]]
) -> None:
    """Make ``root`` (an empty directory) the replica's whole file system, then pivot into it.

    It holds only what is named: this machine's system directories and interpreter and the
    platform's ``uv`` read-only, the replica's image tree, environment and home writable, a
    ``/proc``, a few devices, and a private ``/tmp``. The data
    directory, the platform's install, other versions and the users' homes are not in it,
    and the old root is detached, so nothing below it can be reached again.
    """
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    # Fresh, empty and the replica's own: not this machine's temp directories (first: what
    # is placed below lies under them, on a test machine).
    for place in ("/tmp", "/var/tmp", "/run", "/dev/shm"):  # noqa: S108
        os.makedirs(root + place, exist_ok=True)
        _mount("tmpfs", root + place, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
    for path in readonly:
        _place(root, path, writable=False)
    for path in writable:
        _place(root, path, writable=True)
    for path, layer in overlays:
        _overlay(root, path, layer)
    for device in ("null", "zero", "full", "random", "urandom", "tty"):
        _place(root, f"/dev/{device}", writable=True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        if not os.path.lexists(f"{root}/dev/{name}"):
            os.symlink(target, f"{root}/dev/{name}")
    # This machine's /proc (a fresh one needs a PID namespace of its own), read-only: its
    # processes' environments and files stay closed to another user namespace, and files
    # such as /proc/sysrq-trigger, writable by their owner, stay out of reach of a server
    # whose uid is this machine's root.
    _place(root, "/proc", writable=False)
    os.chdir(root)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_PIVOT_ROOT, b".", b".") != 0:  # the old root now lies under "/"
        error = ctypes.get_errno()
        raise OSError(error, f"pivot_root into {root}: {os.strerror(error)}")
    if libc.umount2(b".", _MNT_DETACH) != 0:  # ... and is gone
        error = ctypes.get_errno()
        raise OSError(error, f"detaching the old root: {os.strerror(error)}")
    os.chdir("/")
    _mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _unprivileged_ports() -> None:
    """Any port for the server, 80 included: the namespace is its own (a per-namespace knob)."""
    with (
        contextlib.suppress(OSError),
        open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as knob,
    ):
        knob.write("0")


def _no_privileges(memory_bytes: int | None) -> None:
    """In the server's process before its exec: no capability can come back (it could
    otherwise undo its mounts), no privilege gained by exec, the memory limit."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for capability in range(64):
        libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)  # EINVAL past the last: ignored
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))


def _wait_listening(server: subprocess.Popen[bytes], port: int) -> bool:
    """Whether the server listens on ``port`` before it exits. Read from the namespace's
    socket tables, not by connecting: a server that serves one connection and exits
    (``python -m wsgiref.simple_server``) keeps that one for its first request."""
    while server.poll() is None:
        if port in _listening_ports():
            return True
        time.sleep(0.02)
    return False


def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in lines.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


class _Side(asyncio.Protocol):
    """One end of a forwarded connection; what it receives its peer sends on."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []
        self.on_first_data: Callable[[], None] | None = None
        """Called at the first bytes: the server is connected to only then, so that a
        connection that sends nothing (a readiness check) costs the server nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def link(self, peer: _Side) -> None:
        self.peer, peer.peer = peer, self
        for side in (self, peer):
            for data in side.early:
                side.peer.transport.write(data)  # type: ignore[union-attr]
            side.early = []

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.transport is None:
            if not self.early and self.on_first_data is not None:
                self.on_first_data()
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport is not None:
            if self.peer.transport.can_write_eof():
                self.peer.transport.write_eof()
                return True
            self.peer.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def _forward(listener: socket.socket, port: int, server: subprocess.Popen[bytes]) -> None:
    loop = asyncio.get_running_loop()

    async def attach(client: _Side) -> None:
        try:
            _, upstream = await loop.create_connection(_Side, "127.0.0.1", port)
        except OSError:
            try:
                _, upstream = await loop.create_connection(_Side, "::1", port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
        if client.transport is None:  # the client left while we connected
            if upstream.transport is not None:
                upstream.transport.close()
            return
        client.link(upstream)

    attaching: set[asyncio.Task[None]] = set()

    def accepted() -> _Side:
        client = _Side()

        def start() -> None:
            client.on_first_data = None
            task = loop.create_task(attach(client))
            attaching.add(task)
            task.add_done_callback(attaching.discard)

        client.on_first_data = start
        return client

    unix = await loop.create_unix_server(accepted, sock=listener)
    await asyncio.to_thread(server.wait)
    unix.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
