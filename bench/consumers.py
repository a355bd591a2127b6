"""Our event consumer runner against FastStream's, on the same events, in the same run.

Issue 20 asked for the platform's event consumers on FastStream unless a measurement shows
it costs what we cannot pay. This measures both on one nats-server (JetStream, the
platform's own events stream), each consumer in a process of its own so that its CPU is its
own, runs alternated:

- ``steady``: 1,000 ``version.created`` events published at 200/s; latency from the event's
  ``time`` (set when published) to the handler, p50/p99, and consumer CPU per event;
- ``burst``: 2,000 events already in the stream when the consumer starts; events/s drained
  and CPU per event.

Both consumers are durable pull consumers acknowledging explicitly after a handler that
parses the CloudEvent and its data (what every platform handler does first): ours is
``dockyard_common.runtime.consumers.run_consumer``; FastStream's a ``NatsBroker.subscriber`` with
``PullSub(batch_size=1)``, ``AckPolicy.NACK_ON_ERROR`` and a pydantic-typed handler.

    uv run --frozen --all-packages --group bench python bench/consumers.py [--rounds 5]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dockyard_common import CloudEvent, CodeRef, ConsumerSpec, EndpointSpec, Version
from dockyard_common.runtime import EventPublisher, connect_nats, provision_jetstream, run_consumer
from dockyard_common.subjects import EVENTS_STREAM, event_type_filter

RUNNERS = ("dockyard", "faststream")
EVENT_TYPE = "version.created"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Tally:
    """What one consumer saw: the latency of each event, and its CPU from first to last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self._first: tuple[float, float] | None = None
        self.cpu_s = self.wall_s = 0.0

    def seen(self, event: CloudEvent) -> None:
        now = time.time()
        if self._first is None:
            self._first = (_cpu_s(), time.perf_counter())
        self.latencies.append(now - event.time.timestamp())
        if len(self.latencies) == self.count:
            self.cpu_s = _cpu_s() - self._first[0]
            self.wall_s = time.perf_counter() - self._first[1]
            self.done.set()


async def _consume_ours(url: str, durable: str, tally: _Tally) -> None:
    nc = await connect_nats(url, name="bench-consumer")

    async def handle(event: CloudEvent, _: object) -> None:
        event.parsed_data()
        tally.seen(event)

    spec = ConsumerSpec(durable=durable, event_types=[EVENT_TYPE])
    task = asyncio.create_task(run_consumer(nc.jetstream(), spec, handle))
    await tally.done.wait()
    task.cancel()
    await nc.drain()


async def _consume_faststream(url: str, durable: str, tally: _Tally) -> None:
    from faststream import AckPolicy
    from faststream.nats import JStream, NatsBroker, PullSub
    from nats.js.api import ConsumerConfig

    broker = NatsBroker(url, logger=None)

    @broker.subscriber(  # type: ignore[misc]
        event_type_filter(EVENT_TYPE),
        stream=JStream(EVENTS_STREAM, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        config=ConsumerConfig(max_deliver=50, ack_wait=30.0),
    )
    async def handle(event: CloudEvent) -> None:
        event.parsed_data()
        tally.seen(event)

    await broker.start()
    await tally.done.wait()
    await broker.stop()


def consume(runner: str, url: str, durable: str, count: int) -> None:
    """The child process: consume ``count`` events, print what it measured."""
    tally = _Tally(count)
    run = _consume_ours if runner == "dockyard" else _consume_faststream
    asyncio.run(run(url, durable, tally))
    result = {"latencies": tally.latencies, "cpu_s": tally.cpu_s, "wall_s": tally.wall_s}
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")


def _version(n: int) -> Version:
    return Version(
        owner="bench",
        project="p",
        deployment="d",
        name=f"v{n}",
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
        targets=["local-eu"],
    )


async def _publish(url: str, count: int, first: int, rate: float | None) -> None:
    nc = await connect_nats(url, name="bench-publisher")
    publisher = EventPublisher(nc.jetstream(), source="bench")
    for n in range(first, first + count):
        await publisher.publish(EVENT_TYPE, _version(n), resource_key=f"k{n}", revision=n)
        if rate:
            await asyncio.sleep(1 / rate)
    await nc.drain()


async def _empty_stream(url: str) -> None:
    nc = await connect_nats(url, name="bench-purge")
    await nc.jetstream().purge_stream(EVENTS_STREAM)
    await nc.drain()


async def one_round(runner: str, url: str, mode: str, count: int, first: int) -> dict[str, Any]:
    """One consumer process over ``count`` fresh events; its figures."""
    await _empty_stream(url)
    command = [sys.executable, __file__, "--consume", runner, "--url", url]
    command += ["--durable", f"bench-{runner}-{mode}-{first}", "--count", str(count)]
    if mode == "burst":
        await _publish(url, count, first, None)
    child = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    if mode == "steady":
        await asyncio.sleep(2.0)  # its consumer exists and waits before the first event
        await _publish(url, count, first, 200.0)
    out, _ = await child.communicate()
    measured = json.loads(out.decode().rpartition("RESULT ")[2])
    figures = {"cpu_us_per_event": measured["cpu_s"] / count * 1e6}
    if mode == "burst":  # the events waited in the stream: only the drain rate means anything
        figures["events_per_s"] = count / measured["wall_s"] if measured["wall_s"] else 0.0
    else:
        latencies = sorted(measured["latencies"])
        figures["p50_ms"] = latencies[len(latencies) // 2] * 1000
        figures["p99_ms"] = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    return figures


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def main(rounds: int) -> dict[str, Any]:
    """Alternate the two runners ``rounds`` times per mode; medians, min and max."""
    from dockyard_platform.servers import start_nats

    server = start_nats(Path(tempfile.mkdtemp(prefix="bench-consumers-")))
    figures: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        nc = await connect_nats(server.url, name="bench-setup")
        await provision_jetstream(nc.jetstream())
        await nc.drain()
        first = 0
        for mode, count in (("steady", 1000), ("burst", 2000)):
            for number in range(rounds):
                order = RUNNERS if number % 2 == 0 else RUNNERS[::-1]
                for runner in order:
                    result = await one_round(runner, server.url, mode, count, first)
                    first += count
                    for name, value in result.items():
                        figures.setdefault(mode, {}).setdefault(runner, {}).setdefault(
                            name, []
                        ).append(value)
    finally:
        server.stop()
    summary = {
        mode: {
            runner: {name: _spread(values) for name, values in measured.items()}
            for runner, measured in by_runner.items()
        }
        for mode, by_runner in figures.items()
    }
    for mode, by_runner in summary.items():
        for runner, measured in by_runner.items():
            line = ", ".join(
                f"{name} {m['median']} [{m['min']}, {m['max']}]" for name, m in measured.items()
            )
            print(f"{mode:6} {runner:10} {line}")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--consume", choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--durable", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume, args.url, args.durable, args.count)
    else:
        print(json.dumps({"consumers": asyncio.run(main(args.rounds))}))
