"""Eager read-ahead and per-pull timeouts."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import PullEagerObj, PullTimeoutError, PullTimeoutObj, SourceBufferObj
from pullpush.testing import TrackedSource, assert_items, assert_raises, settle


async def test_eager_reads_ahead_up_to_buffer_size() -> None:
    tracked = TrackedSource(range(10))
    eager = PullEagerObj(tracked, buffer_size=3)
    assert await eager.__anext__() == 0
    await settle()
    assert tracked.pulls == 4  # the one taken plus three ahead
    await assert_items(eager, list(range(1, 10)))


async def test_eager_prefetch_starts_before_the_first_pull() -> None:
    tracked = TrackedSource(range(3))
    eager = PullEagerObj(tracked)
    eager.prefetch()
    await settle()
    assert tracked.pulls == 1
    await assert_items(eager, [0, 1, 2])


async def test_eager_raises_source_errors_after_earlier_items() -> None:
    tracked = TrackedSource(range(5), fail_at=3, error=KeyError("lost"))
    await assert_raises(PullEagerObj(tracked, 2), KeyError, items=[0, 1, 2])
    assert tracked.closed


async def test_eager_overlaps_source_and_consumer() -> None:
    tracked = TrackedSource(range(5), delay=0.01)
    eager = PullEagerObj(tracked, buffer_size=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async for _ in eager:
        await asyncio.sleep(0.01)
    # Not a timing assertion on speed: only that the items all arrived.
    assert tracked.exhausted and loop.time() > start


async def test_eager_close_cancels_the_read_ahead() -> None:
    tracked = TrackedSource(range(100), delay=0.01)
    eager = PullEagerObj(tracked, buffer_size=2)
    assert await eager.__anext__() == 0
    await eager.aclose()
    assert tracked.closed


async def test_eager_buffer_size_change_applies_from_the_next_pull() -> None:
    tracked = TrackedSource(range(20))
    eager = PullEagerObj(tracked, buffer_size=1)
    assert await eager.__anext__() == 0
    await settle()
    assert tracked.pulls == 2  # one taken, one ahead
    eager.buffer_size = 4
    assert await eager.__anext__() == 1
    await settle()
    assert tracked.pulls == 6  # two taken, four ahead
    eager.buffer_size = 2
    # Items already held are kept (nothing is lost); reading resumes below two.
    assert await eager.__anext__() == 2
    assert await eager.__anext__() == 3
    await settle()
    assert tracked.pulls == 6  # 4 and 5 held
    assert await eager.__anext__() == 4
    await settle()
    assert tracked.pulls == 7  # 5 and 6 held
    await assert_items(eager, list(range(5, 20)))


def test_eager_rejects_a_zero_buffer() -> None:
    with pytest.raises(ValueError, match="buffer_size must be >= 1"):
        PullEagerObj(SourceBufferObj(), 0)


async def test_timeout_raises_and_restart_picks_up_the_late_item() -> None:
    slow = TrackedSource(["late", "next"], delay=0.05)
    chain = PullTimeoutObj(slow, 0.001)
    with pytest.raises(PullTimeoutError, match="timed out"):
        await chain.__anext__()
    assert chain.timeouts == 1 and slow.pulls == 1
    chain.restart()
    chain.time_out = 5
    assert await chain.__anext__() == "late"
    assert slow.pulls == 1  # the same pull: nothing lost, no overlap
    await assert_items(chain, ["next"])


async def test_timeout_without_throwing_keeps_waiting() -> None:
    slow = TrackedSource([1, 2], delay=0.02)
    chain = PullTimeoutObj(slow, 0.005, throw_on_timeout=False)
    await assert_items(chain, [1, 2])
    assert chain.timeouts >= 2


async def test_timeout_error_is_a_timeout_error_and_closes_through_async_for() -> None:
    slow = TrackedSource([1], delay=1)
    error = await assert_raises(PullTimeoutObj(slow, 0.001), TimeoutError)
    assert isinstance(error, PullTimeoutError)
    assert slow.closed
