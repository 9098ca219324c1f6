"""Push-to-pull bridges, bounded buffers and their overflow policies."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pullpush import (
    BufferFullError,
    PushPullBufferCacheObj,
    PushPullBufferObj,
    PushPullObj,
    SinkCollectObj,
    SourceBufferObj,
)
from pullpush.testing import assert_items, collect, settle


async def test_pushed_values_come_out_in_order_and_close_ends_after_draining() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj([0])

    async def produce() -> None:
        for i in range(1, 50):
            assert await queue.sink.asend(i)
            if i % 7 == 0:
                await asyncio.sleep(0)
        await queue.sink.aclose()

    producer = asyncio.create_task(produce())
    await assert_items(queue.source, list(range(50)))
    await producer
    assert len(queue) == 0


async def test_the_pull_side_waits_for_values() -> None:
    queue: PushPullBufferObj[str] = PushPullBufferObj()
    pull = asyncio.ensure_future(queue.source.__anext__())
    await settle()
    assert not pull.done()
    assert queue.peek() is None
    await queue.sink.asend("a")
    assert await pull == "a"
    await queue.sink.aclose()
    assert await collect(queue.source) == []


async def test_athrow_on_the_sink_raises_on_the_pull_side_after_draining() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj()
    await queue.sink.asend(1)
    await queue.sink.asend(2)
    await queue.sink.athrow(RuntimeError("producer failed"))
    got = []
    with pytest.raises(RuntimeError, match="producer failed"):
        async for item in queue.source:
            got.append(item)
    assert got == [1, 2]


async def test_block_policy_makes_the_producer_wait_for_room() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=2)
    await queue.sink.asend(1)
    await queue.sink.asend(2)
    blocked = asyncio.create_task(queue.sink.asend(3))
    await settle()
    assert not blocked.done()
    assert queue.statistics().blocked_producers == 1
    assert await queue.source.__anext__() == 1
    assert await asyncio.wait_for(blocked, 1) is True
    assert list(queue.buffer) == [2, 3]
    await queue.sink.aclose()
    assert await collect(queue.source) == [2, 3]


async def test_a_blocked_producer_is_released_when_the_consumer_closes() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=1)
    await queue.sink.asend(1)
    blocked = asyncio.create_task(queue.sink.asend(2))
    await settle()
    await queue.source.aclose()
    assert await asyncio.wait_for(blocked, 1) is False


@pytest.mark.parametrize("end", ["aclose", "athrow"])
async def test_fix_producers_blocked_when_the_sink_ends_are_released_and_drop_their_values(
    end: str,
) -> None:
    # Found by the stress suite: one blocked producer got False yet its value was
    # still delivered (or left in the buffer), and the others waited forever.
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=1)
    await queue.sink.asend(0)
    blocked = [asyncio.create_task(queue.sink.asend(i)) for i in (1, 2, 3)]
    await settle()
    if end == "aclose":
        await queue.sink.aclose()
    else:
        await queue.sink.athrow(ValueError("producer failed"))
    assert await asyncio.wait_for(asyncio.gather(*blocked), 1) == [False, False, False]
    got: list[int] = []
    with pytest.raises(ValueError) if end == "athrow" else contextlib.nullcontext():
        async for value in queue.source:
            got.append(value)
    assert got == [0]  # only what was accepted
    assert len(queue) == 0 and queue.statistics().blocked_producers == 0


async def test_drop_oldest_keeps_the_newest_values() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=3, overflow="drop_oldest")
    for i in range(6):
        await queue.sink.asend(i)
    await queue.sink.aclose()
    assert queue.statistics().dropped == 3
    await assert_items(queue.source, [3, 4, 5])


async def test_drop_newest_keeps_the_oldest_values() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=3, overflow="drop_newest")
    for i in range(6):
        await queue.sink.asend(i)
    await queue.sink.aclose()
    assert "dropped=3" in repr(queue)
    await assert_items(queue.source, [0, 1, 2])


async def test_error_policy_raises_when_full() -> None:
    queue: PushPullBufferObj[int] = PushPullBufferObj(maxsize=1, overflow="error")
    await queue.sink.asend(1)
    with pytest.raises(BufferFullError, match="maxsize=1"):
        await queue.sink.asend(2)
    assert list(queue.buffer) == [1]


def test_bad_bounds_and_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="overflow must be one of"):
        PushPullBufferObj(maxsize=1, overflow="drop_everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxsize must be >= 1"):
        PushPullBufferObj(maxsize=0)
    with pytest.raises(TypeError, match="maxsize must be an int"):
        PushPullBufferObj(maxsize=1.5)  # type: ignore[arg-type]


async def test_buffer_cache_yields_the_whole_accumulated_list_per_signal() -> None:
    cache: PushPullBufferCacheObj[int] = PushPullBufferCacheObj()
    assert await cache.source.__anext__() == []
    await cache.sink.asend(1)
    assert await cache.source.__anext__() == [1]
    await cache.sink.asend(2)
    await cache.sink.asend(3)
    assert await cache.source.__anext__() == [1, 2, 3]
    await cache.sink.aclose()
    assert await collect(cache.source) == [[1, 2, 3]]


async def test_push_pull_obj_connects_any_sink_and_peekable_source() -> None:
    shared: list[int] = []
    source = SourceBufferObj()
    bridge = PushPullObj(SinkCollectObj(shared), source)

    async def produce() -> None:
        for i in range(3):
            await bridge.sink.asend(i)
            source.buffer.append(shared[-1] * 10)
        await bridge.sink.aclose()

    producer = asyncio.create_task(produce())
    await assert_items(bridge.source, [0, 10, 20])
    await producer


@pytest.mark.timeout(10)
async def test_push_pull_obj_over_one_shared_list() -> None:
    shared: list[int] = [0]
    bridge = PushPullObj(SinkCollectObj(shared), SourceBufferObj(shared))
    assert bridge.peek() == 0
    assert await bridge.source.__anext__() == 0  # what is there is drained at once
    pull = asyncio.ensure_future(bridge.source.__anext__())
    await settle()
    assert not pull.done()  # the shared list is empty: the pull side waits
    assert await bridge.sink.asend(1)
    assert await asyncio.wait_for(pull, 1) == 1  # the pushed value reached the pull side
    assert shared == []

    async def produce() -> None:
        for i in range(2, 30):
            assert await bridge.sink.asend(i)
            if i % 5 == 0:
                await asyncio.sleep(0)
        await bridge.sink.aclose()

    producer = asyncio.create_task(produce())
    await assert_items(bridge.source, list(range(2, 30)))
    await producer
    assert shared == []


@pytest.mark.timeout(10)
async def test_buffer_cache_waits_for_a_signal_after_the_first_pull() -> None:
    cache: PushPullBufferCacheObj[int] = PushPullBufferCacheObj()
    first = await cache.source.__anext__()
    assert first == [] and first is cache.buffer
    pull = asyncio.ensure_future(cache.source.__anext__())
    await settle()
    assert not pull.done()
    await cache.sink.asend(7)
    assert await asyncio.wait_for(pull, 1) == [7]
    pull = asyncio.ensure_future(cache.source.__anext__())
    await settle()
    assert not pull.done()
    await cache.sink.aclose()
    assert await asyncio.wait_for(pull, 1) == [7]  # the close's last drain
    await assert_items(cache.source, [])
