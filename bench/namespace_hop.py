"""What the namespace bridge of a local replica adds to a request, against a direct call.

A local replica runs in network namespaces of its own and is reached through a Unix socket
its launcher forwards to the replica's port (docs/runtime.md). This benchmark starts the
same small keep-alive HTTP server twice: once on a TCP port of this machine (the floor: how
a replica was reached before it had namespaces), once under the real launcher
(``unshare`` + ``dockyard_scheduler/drivers/local/sandbox.py``) behind its socket. The same
client of this process (raw HTTP/1.1, keep-alive, one request at a time per connection)
calls each at 1 and at 32 concurrent connections for ``--seconds`` per round, rounds
interleaved, ``--rounds`` times; per-request latency p50/p99 and requests/s, medians over
the rounds with min and max. The hop is the difference of the p50s.

Run: ``.venv/bin/python bench/namespace_hop.py``; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dockyard_scheduler.drivers.local.isolation import launcher_command, namespaces_unavailable

SERVER = b"""\
import asyncio, os

BODY = b"ok"
ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n" + BODY


async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "0.0.0.0", int(os.environ.get("PORT", "8000")))
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
ANSWER_LENGTH = len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


Target = tuple[str, int] | str
"""A TCP (host, port), or a Unix socket's path."""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def connect(
    target: tuple[str, int] | str,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(target, str):
        return await asyncio.open_unix_connection(target)
    return await asyncio.open_connection(*target)


async def load(target: Target, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await connect(target)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(REQUEST)
                await reader.readexactly(ANSWER_LENGTH)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return {
        "p50_us": percentile(latencies, 50) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
        "rps": len(latencies) / seconds,
    }


def wait_connectable(target: Target, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
        with socket.socket(family) as probe:
            if probe.connect_ex(target) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{target} never accepted a connection")


def summarise(rounds: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = statistics.median(values)
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if (why := namespaces_unavailable()) is not None:
        print(f"no namespaces here ({why}): nothing to measure", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="namespace-hop-"))
    (work / "server.py").write_bytes(SERVER)
    hidden = work / "data"
    (hidden / "own").mkdir(parents=True)
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        direct_port = spare.getsockname()[1]
    python = shutil.which("python3") or sys.executable
    socket_path = work / "replica.sock"
    direct = subprocess.Popen(
        [python, str(work / "server.py")], env={"PORT": str(direct_port)}, cwd=work
    )
    bridged = subprocess.Popen(
        launcher_command(
            [python, str(work / "server.py")],
            socket=socket_path,
            port=8000,
            cwd=work,
            hide=[hidden],
            expose=[(hidden / "own", True)],
        ),
        cwd=work,
    )
    results: dict[str, dict[int, list[dict[str, float]]]] = {"direct": {}, "bridged": {}}
    try:
        targets = {"direct": ("127.0.0.1", direct_port), "bridged": str(socket_path)}
        for target in targets.values():
            wait_connectable(target)
        for _ in range(args.rounds):
            for clients in (1, 32):
                for name, target in targets.items():
                    run = asyncio.run(load(target, clients, args.seconds))
                    results[name].setdefault(clients, []).append(run)
    finally:
        for process in (direct, bridged):
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, float] = {}
    for clients in (1, 32):
        direct_run = summarise(results["direct"][clients])
        bridged_run = summarise(results["bridged"][clients])
        hop = bridged_run["p50_us"] - direct_run["p50_us"]
        print(
            f"{clients:>2} client(s): direct p50 {direct_run['p50_us']:.0f} µs "
            f"p99 {direct_run['p99_us']:.0f} µs {direct_run['rps']:.0f} req/s | bridged p50 "
            f"{bridged_run['p50_us']:.0f} µs p99 {bridged_run['p99_us']:.0f} µs "
            f"{bridged_run['rps']:.0f} req/s | hop +{hop:.0f} µs"
        )
        for name, run in (("direct", direct_run), ("bridged", bridged_run)):
            for key, value in run.items():
                figures[f"{name}_c{clients}_{key}"] = round(value, 1)
        figures[f"hop_p50_us_c{clients}"] = round(hop, 1)
    rows = []
    for clients in (1, 32):
        for figure in ("p50_us", "p99_us", "rps"):
            bridged = figures[f"bridged_c{clients}_{figure}"]
            direct = figures[f"direct_c{clients}_{figure}"]
            rows.append(
                {
                    "name": f"bridged call c={clients} {figure}",
                    "subject": bridged,
                    "reference": direct,
                    "ratio": round(bridged / direct, 3),
                    "raw": {k: v for k, v in figures.items() if f"_c{clients}_{figure}" in k},
                }
            )
    result = {"benchmark": "namespace_hop", "rounds": args.rounds, **figures, "rows": rows}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
