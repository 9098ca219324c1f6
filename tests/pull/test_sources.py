"""Sources: buffer, cache, from-iterable and timer."""

from __future__ import annotations

import asyncio
import datetime
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from pullpush import (
    BufferMode,
    PullMapObj,
    PullTimerObj,
    SourceBufferObj,
    SourceCacheObj,
    SourceFromIterable,
)
from pullpush.testing import assert_items, collect


async def test_buffer_fifo_and_lifo() -> None:
    await assert_items(SourceBufferObj([1, 2, 3], True, BufferMode.FIFO), [1, 2, 3])
    await assert_items(SourceBufferObj([1, 2, 3], True, BufferMode.LIFO), [3, 2, 1])


async def test_buffer_appends_while_iterating_are_seen() -> None:
    source = SourceBufferObj([1], one_shot=True)
    got = []
    async for item in source:
        got.append(item)
        if item < 4:
            source.buffer.append(item + 1)
    assert got == [1, 2, 3, 4]


async def test_buffer_peek_shows_the_next_item_without_consuming() -> None:
    fifo = SourceBufferObj([1, 2])
    lifo = SourceBufferObj([1, 2], mode=BufferMode.LIFO)
    assert (fifo.peek(), lifo.peek()) == (1, 2)
    assert await fifo.__anext__() == 1
    assert fifo.peek() == 2 and len(fifo) == 1
    assert SourceBufferObj().peek() is None


@pytest.mark.parametrize("kind", [list, deque])
@pytest.mark.parametrize("mode", [BufferMode.FIFO, BufferMode.LIFO])
async def test_buffer_uses_the_sequence_it_is_given_not_a_copy(
    kind: type[Any], mode: BufferMode
) -> None:
    shared = kind([1, 2])
    source = SourceBufferObj(shared, mode=mode)
    assert source.buffer is shared
    fifo = mode is BufferMode.FIFO
    assert await anext(source) == (1 if fifo else 2)
    assert list(shared) == ([2] if fifo else [1])  # what was yielded left the sequence
    shared.append(3)  # the owner's appends reach the source
    assert await collect(source) == ([2, 3] if fifo else [3, 1])
    assert len(shared) == 0
    shared.append(4)  # restartable: the next pull drains what was added since
    assert await collect(source) == [4]


async def test_buffer_copies_other_iterables() -> None:
    items = (1, 2)
    source = SourceBufferObj(items, one_shot=True)
    assert isinstance(source.buffer, deque)
    await assert_items(source, [1, 2])
    assert items == (1, 2)


def test_buffer_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="mode must be a BufferMode"):
        SourceBufferObj([1], False, "fifo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buffer must be an iterable"):
        SourceBufferObj(5)  # type: ignore[arg-type]


@pytest.mark.timeout(10)
async def test_cache_yields_the_current_cache_on_every_pull() -> None:
    source = SourceCacheObj("hello")
    assert [await anext(source), await anext(source)] == ["hello", "hello"]
    source.cache = "world"
    assert source.peek() == "world"
    assert await anext(source) == "world"
    got = []
    async for item in source:  # an async for goes on too, until left
        got.append(item)
        if len(got) == 3:
            source.cache = "again"
        if len(got) == 5:
            break
    assert got == ["world", "world", "world", "again", "again"]


@pytest.mark.timeout(10)
async def test_cache_ends_when_closed() -> None:
    source = SourceCacheObj(1)
    assert await anext(source) == 1
    source.close()
    await assert_items(source, [])
    assert source.done
    operator = PullMapObj(SourceCacheObj(2), lambda n: n * 10)
    assert [await anext(operator), await anext(operator)] == [20, 20]
    await operator.aclose()
    assert operator.done


async def test_from_iterable_wraps_sync_and_async_iterables_lazily() -> None:
    produced: list[int] = []

    def numbers() -> object:
        for i in range(3):
            produced.append(i)
            yield i

    source = SourceFromIterable(numbers())
    assert await source.__anext__() == 0
    assert produced == [0]
    await assert_items(source, [1, 2])

    async def agen() -> AsyncGenerator[str, None]:
        for c in "xy":
            yield c

    await assert_items(SourceFromIterable(agen()), ["x", "y"])


async def test_from_iterable_peeks() -> None:
    source = SourceFromIterable([10, 20])
    assert source.peek() == 10
    assert source.peek() == 10
    assert await source.__anext__() == 10
    assert source.peek() == 20

    async def agen() -> AsyncGenerator[int, None]:
        yield 1
        yield 2

    asource = SourceFromIterable(agen())
    assert asource.peek() is None
    assert await asource.apeek() == 1
    assert asource.peek() == 1
    await assert_items(asource, [1, 2])
    assert await asource.apeek() is None


def test_from_iterable_rejects_non_iterables() -> None:
    with pytest.raises(TypeError, match="iterable must be an iterable"):
        SourceFromIterable(42)  # type: ignore[arg-type]


async def test_from_iterable_close_closes_the_wrapped_generator() -> None:
    closed = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    source = SourceFromIterable(agen())
    async for item in source:
        if item == 1:
            break
    await source.aclose()
    assert closed == [True]


async def test_timer_ticks_until_closed() -> None:
    timer = PullTimerObj(0.001)
    ticks = []
    async for tick in timer:
        ticks.append(tick)
        if len(ticks) == 3:
            timer.close()
    assert ticks == [None, None, None]
    assert timer.done


async def test_timer_generates_timestamps() -> None:
    timer = PullTimerObj(0.001, generate_timestamp=True)
    stamp = await timer.__anext__()
    assert isinstance(stamp, datetime.datetime) and stamp.tzinfo is not None
    await timer.aclose()


async def test_closing_a_waiting_timer_ends_its_pull() -> None:
    timer = PullTimerObj(60)
    pull = asyncio.ensure_future(timer.__anext__())
    await asyncio.sleep(0.01)
    await timer.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pull, 1)


async def test_timer_interval_change_applies_to_the_tick_being_waited_for() -> None:
    # Regression: lowering the interval while a pull waited left it waiting for the
    # old interval (an hour-long timer could not be sped up).
    timer = PullTimerObj(60)
    pull = asyncio.ensure_future(timer.__anext__())
    await asyncio.sleep(0.01)
    timer.interval = 0.001
    assert await asyncio.wait_for(pull, 2) is None
    await timer.aclose()
    # Raising it also applies to the pending tick: due `interval` after the last.
    loop = asyncio.get_running_loop()
    timer = PullTimerObj(0.05)
    start = loop.time()
    pull = asyncio.ensure_future(timer.__anext__())
    await asyncio.sleep(0.01)
    timer.interval = 0.15
    assert await asyncio.wait_for(pull, 2) is None
    assert loop.time() - start >= 0.149
    await timer.aclose()


async def test_timer_interval_change_applies_from_the_next_tick() -> None:
    loop = asyncio.get_running_loop()
    timer = PullTimerObj(0.001)
    assert await timer.__anext__() is None
    timer.interval = 0.05
    gaps = []
    for _ in range(2):
        before = loop.time()
        assert await timer.__anext__() is None
        gaps.append(loop.time() - before)
    assert min(gaps) >= 0.045, gaps
    await timer.aclose()


def test_timer_rejects_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        PullTimerObj(0)
    timer = PullTimerObj(1)
    with pytest.raises(ValueError, match="interval must be > 0"):
        timer.interval = 0
    assert timer.interval == 1
