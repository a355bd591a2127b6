"""Progress reports: in order per phase, the last always sent, none after draining."""

from __future__ import annotations

import asyncio

from dockyard_builder.progress import ProgressReporter
from dockyard_common import BuildProgress, CodeRef, EndpointSpec, Version

VERSION = Version(
    owner="acme",
    project="demo",
    deployment="web",
    name="v1",
    code=CodeRef(blob="sha256:" + "0" * 64),
    targets=["local-eu"],
    endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
)


async def test_reports_from_a_thread_arrive_in_order_and_end_with_the_total() -> None:
    sent: list[BuildProgress] = []

    async def slow_publish(report: BuildProgress) -> None:
        await asyncio.sleep(0.01)  # slower than the build: reports must queue, not race
        sent.append(report)

    reporter = ProgressReporter(VERSION, slow_publish, asyncio.get_running_loop(), interval_s=0)

    def build() -> None:
        for done in range(0, 1001, 10):
            reporter("layers", done, 1000)

    await asyncio.to_thread(build)
    await reporter.drain()
    done = [report.bytes_done for report in sent]
    assert done == sorted(done) and done[-1] == 1000
    reporter("layers", 5, 1000)  # after draining: ignored
    await asyncio.sleep(0.05)
    assert [report.bytes_done for report in sent] == done
