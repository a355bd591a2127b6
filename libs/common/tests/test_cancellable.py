"""``cancellable``: the result and errors of the work come through; a cancellation that the
work swallows once is delivered again until the work ends."""

from __future__ import annotations

import asyncio

import pytest

from dockyard_common.runtime import cancellable


async def test_the_result_and_the_error_come_through() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("no")

    assert await cancellable(answer) == 42
    with pytest.raises(ValueError, match="no"):
        await cancellable(fail)


async def test_work_that_swallows_a_cancellation_still_ends() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.set()  # as a lost cancellation looks from outside: it goes on
        await asyncio.sleep(60)

    task = asyncio.create_task(cancellable(stubborn))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert swallowed.is_set()
    assert done and task.cancelled()


async def test_a_second_cancellation_while_ending_does_not_orphan_the_work() -> None:
    ended = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.15))  # a clean-up that takes a while
            ended.set()

    # Re-cancelled only after a second: the clean-up (0.15 s) has its time, even on a
    # loaded machine.
    task = asyncio.create_task(cancellable(slow_to_end, again_after_s=1.0))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # cancelled again while the work is still ending
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()
    assert ended.is_set()
