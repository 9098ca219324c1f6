"""Window, window-with-timeout and buffer."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import PullBufferObj, PullWindowObj, PullWindowTimeoutObj, SourceBufferObj
from pullpush.testing import TrackedSource, assert_items


def items(*values: object) -> SourceBufferObj[object]:
    return SourceBufferObj(values, one_shot=True)


async def test_window_yields_full_windows_and_the_remainder() -> None:
    await assert_items(PullWindowObj(items(1, 2, 3, 4, 5), 2), [[1, 2], [3, 4], [5]])
    await assert_items(
        PullWindowObj(items(1, 2, 3, 4, 5), 2, yield_remainder=False), [[1, 2], [3, 4]]
    )


async def test_window_size_change_applies_to_the_next_window() -> None:
    chain = PullWindowObj(items(*range(7)), 2)
    assert await chain.__anext__() == [0, 1]
    chain.window_size = 3
    await assert_items(chain, [[2, 3, 4], [5, 6]])


async def test_window_timeout_flushes_by_count_or_time() -> None:
    queue = asyncio.Queue[int]()

    async def source():  # type: ignore[no-untyped-def]
        while (item := await queue.get()) >= 0:
            yield item

    chain = PullWindowTimeoutObj(source(), 3, 0.05)
    for i in range(4):
        queue.put_nowait(i)
    assert await chain.__anext__() == [0, 1, 2]  # full
    assert await chain.__anext__() == [3]  # the deadline passed with one item
    queue.put_nowait(4)
    queue.put_nowait(-1)
    assert await chain.__anext__() == [4]  # the source ended: remainder yielded
    await assert_items(chain, [])


async def test_window_timeout_carries_the_pending_pull_over_and_loses_nothing() -> None:
    slow = TrackedSource(range(6), delay=0.02)
    batches = await asyncio.wait_for(
        _collect(PullWindowTimeoutObj(slow, 4, 0.005, timeout_from="last_item")), 5
    )
    assert [x for batch in batches for x in batch] == list(range(6))
    assert all(batch for batch in batches)


async def _collect(chain: PullWindowTimeoutObj[int]) -> list[list[int]]:
    return [batch async for batch in chain]


def test_window_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="window_size must be >= 1"):
        PullWindowObj(items(), 0)
    with pytest.raises(ValueError, match="window_size must be >= 1"):
        PullWindowTimeoutObj(items(), -1, 1.0)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        PullWindowTimeoutObj(items(), 2, 0)
    with pytest.raises(ValueError, match="timeout_from must be"):
        PullWindowTimeoutObj(items(), 2, 1.0, timeout_from="first_item")  # type: ignore[arg-type]


async def test_buffer_flushes_when_the_condition_holds_and_yields_the_remainder() -> None:
    await assert_items(
        PullBufferObj(items(1, 2, 3, 4, 5), lambda b: len(b) >= 3), [[1, 2, 3], [4, 5]]
    )
    await assert_items(
        PullBufferObj(items(1, 2, 3, 4, 5), lambda b: len(b) >= 3, yield_remainder=False),
        [[1, 2, 3]],
    )


async def test_buffer_condition_may_be_async() -> None:
    async def sums_to_ten(buffer: list[int]) -> bool:
        return sum(buffer) >= 10

    await assert_items(PullBufferObj(items(5, 5, 9, 1, 2), sums_to_ten), [[5, 5], [9, 1], [2]])
