"""The PullObj life cycle: cycles, restart, closing, and close propagation."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from pullpush import (
    PullFilterObj,
    PullMapObj,
    PullObj,
    PullObj1To1Link,
    PushPullBufferObj,
    SourceBufferObj,
    SourceObj,
)
from pullpush.testing import TrackedSource, assert_items, assert_raises, collect, settle


class Counter(SourceObj[int]):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.cycles = 0
        self.finalized = 0

    async def pull_impl(self) -> AsyncGenerator[int, Any]:
        self.cycles += 1
        try:
            for i in range(self.n):
                if self.closing:
                    return
                yield i
        finally:
            self.finalized += 1


async def test_a_finished_cycle_ends_the_stream_until_restart() -> None:
    source = Counter(2)
    assert await collect(source) == [0, 1]
    assert source.done
    assert await collect(source) == []
    source.restart()
    assert not source.done
    assert await collect(source) == [0, 1]
    assert source.cycles == 2


async def test_restartable_buffer_source_drains_what_was_added_since() -> None:
    source = SourceBufferObj([1, 2])
    assert await collect(source) == [1, 2]
    assert source.done
    source.buffer.extend([3, 4])
    assert await collect(source) == [3, 4]


async def test_one_shot_buffer_source_stays_done() -> None:
    source = SourceBufferObj([1], one_shot=True)
    assert await collect(source) == [1]
    source.buffer.append(2)
    assert await collect(source) == []


async def test_aclose_closes_every_upstream_object() -> None:
    tracked = TrackedSource(range(10))
    inner = PullObj1To1Link(tracked)
    outer = PullMapObj(inner, lambda x: x)
    assert await outer.__anext__() == 0
    await outer.aclose()
    assert outer.closed and inner.closed and tracked.closed
    assert outer.done
    with pytest.raises(StopAsyncIteration):
        await outer.__anext__()


async def test_break_closes_the_chain() -> None:
    tracked = TrackedSource(range(10))
    chain = PullFilterObj(PullMapObj(tracked, lambda x: x * 2), lambda x: x > 2)
    async for item in chain:
        assert item == 4
        break
    await settle()
    assert chain.closed and tracked.closed
    assert tracked.pulls == 3


async def test_cancelling_the_consumer_closes_the_chain() -> None:
    tracked = TrackedSource(range(100), delay=0.01)
    chain = PullMapObj(tracked, lambda x: x)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in chain:
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert chain.closed and tracked.closed


async def test_error_in_a_callable_reaches_the_consumer_with_traceback_and_closes() -> None:
    def explode(x: int) -> int:
        if x == 2:
            raise ValueError("bad item 2")
        return x

    tracked = TrackedSource(range(5))
    chain = PullMapObj(PullMapObj(tracked, explode), lambda x: x + 1)
    error = await assert_raises(chain, ValueError, items=[1, 2], match="bad item 2")
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "explode" in frames
    assert tracked.closed


async def test_close_is_graceful_delivers_the_item_in_flight_then_ends() -> None:
    source = Counter(100)
    chain = PullMapObj(source, lambda x: x)
    got = []
    async for item in chain:
        got.append(item)
        if item == 3:
            chain.close()
    assert got == [0, 1, 2, 3]
    assert source.closing and chain.done


async def test_close_reaches_the_sources_which_stop_producing() -> None:
    source = Counter(100)
    chain = PullMapObj(source, lambda x: x)
    assert await chain.__anext__() == 0
    chain.close()
    with pytest.raises(StopAsyncIteration):
        await chain.__anext__()
    assert source.closed
    assert source.finalized == 1


async def test_async_with_closes() -> None:
    tracked = TrackedSource(range(3))
    async with PullMapObj(tracked, str) as chain:
        assert await chain.__anext__() == "0"
    assert tracked.closed


async def test_aclose_while_another_task_waits_ends_that_pull() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj()
    consumer = asyncio.create_task(collect(queue.source))
    await settle()
    await queue.source.aclose()
    assert await asyncio.wait_for(consumer, 1) == []


async def test_athrow_raises_inside_the_cycle_and_closes() -> None:
    tracked = TrackedSource(range(3))
    chain = PullMapObj(tracked, lambda x: x)
    assert await chain.__anext__() == 0
    with pytest.raises(KeyError):
        await chain.athrow(KeyError("stop"))
    assert chain.closed and tracked.closed


async def test_restart_during_a_pull_is_refused() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj()
    pull = asyncio.ensure_future(queue.source.__anext__())
    await settle()
    with pytest.raises(RuntimeError, match="in flight"):
        queue.source.restart()
    await queue.sink.asend(1)
    assert await pull == 1
    await queue.source.aclose()


async def test_pull_obj_is_an_async_generator() -> None:
    from collections.abc import AsyncGenerator as AsyncGeneratorABC

    source = SourceBufferObj([1])
    assert isinstance(source, AsyncGeneratorABC)
    assert await source.asend(None) == 1
    assert repr(source) == "<SourceBufferObj open>"


async def test_default_pull_impl_is_empty() -> None:
    await assert_items(PullObj(), [])


@pytest.mark.parametrize("bad", [[1, 2], 3, None, "abc"])
def test_link_rejects_a_source_that_is_not_async_iterable(bad: object) -> None:
    with pytest.raises(TypeError, match="source must be an async iterable"):
        PullObj1To1Link(bad)  # type: ignore[arg-type]
