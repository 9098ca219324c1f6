"""The PullObj life cycle: cycles, restart, closing, and close propagation."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest

from pullpush import (
    PullConcatObj,
    PullEagerObj,
    PullFilterObj,
    PullLabeledZipObj,
    PullMapObj,
    PullObj,
    PullObj1To1Link,
    PullObjManyTo1Link,
    PullRoundRobinObj,
    PullZipObj,
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


# -- mutable sources: a swap takes effect on the next cycle ---------------------------------


@pytest.mark.parametrize(
    "make",
    [PullObj1To1Link, lambda source: PullMapObj(source, lambda x: x)],
    ids=["PullObj1To1Link", "PullMapObj"],
)
async def test_a_source_swapped_mid_cycle_is_read_from_the_next_cycle_on(
    make: Callable[[Any], PullObj[Any]],
) -> None:
    old, new = TrackedSource([1, 2, 3]), TrackedSource(["a", "b"])
    link = make(old)
    assert await link.__anext__() == 1
    link.source = new  # type: ignore[attr-defined]
    # The running cycle iterates the old source to its end; the new one waits.
    assert await collect(link) == [2, 3]
    assert link.done and old.exhausted and new.pulls == 0
    link.restart()
    await assert_items(link, ["a", "b"])
    assert new.closed


async def test_a_source_swapped_before_the_first_pull_is_the_one_read() -> None:
    old, new = TrackedSource([1]), TrackedSource(["a"])
    link: PullObj1To1Link[Any, Any] = PullObj1To1Link(old)
    link.source = new
    await assert_items(link, ["a"])
    assert old.pulls == 0


@pytest.mark.parametrize(
    ("combine", "first", "rest_of_cycle", "next_cycle"),
    [
        (PullConcatObj, 1, [2, 3], ["a", "b", "c"]),
        (PullRoundRobinObj, 1, [3, 2], ["a", "b", "c"]),
        (PullZipObj, (1, 3), [(2,)], [("a", "b"), ("c",)]),
    ],
)
async def test_swapped_sources_of_a_combiner_are_read_from_the_next_cycle_on(
    combine: Callable[[list[Any]], PullObjManyTo1Link[Any, Any]],
    first: Any,
    rest_of_cycle: list[Any],
    next_cycle: list[Any],
) -> None:
    old = [TrackedSource([1, 2]), TrackedSource([3])]
    new = [TrackedSource(["a"]), TrackedSource(["b", "c"])]
    combiner = combine(old)
    assert await combiner.__anext__() == first
    combiner.sources = list(new)
    assert await collect(combiner) == rest_of_cycle
    assert combiner.done and all(s.exhausted for s in old)
    assert [s.pulls for s in new] == [0, 0]
    combiner.restart()
    await assert_items(combiner, next_cycle)
    assert all(s.closed for s in new)


async def test_swapped_labeled_sources_are_read_from_the_next_cycle_on() -> None:
    zipped = PullLabeledZipObj({"n": TrackedSource([1, 2])})
    assert await zipped.__anext__() == {"n": 1}
    zipped.labeled_sources = {"s": TrackedSource(["a"])}
    assert await collect(zipped) == [{"n": 2}]
    zipped.restart()
    await assert_items(zipped, [{"s": "a"}])


@pytest.mark.parametrize(
    "make",
    [
        lambda sources: PullObj1To1Link(sources[0]),
        lambda sources: PullMapObj(sources[0], lambda x: x),
        lambda sources: PullEagerObj(sources[0]),
        PullConcatObj,
        PullRoundRobinObj,
        PullZipObj,
    ],
    ids=["link", "map", "eager", "concat", "round_robin", "zip"],
)
@pytest.mark.parametrize("leave", ["aclose", "break"])
async def test_closing_after_a_mid_cycle_swap_closes_the_source_still_being_read(
    make: Callable[[list[Any]], PullObj[Any]], leave: str
) -> None:
    # Regression: only the new source (never read) was closed; the old one, which
    # the running cycle was still reading, was left open.
    old = [TrackedSource(range(100)), TrackedSource(range(100))]
    new = [TrackedSource(range(100)), TrackedSource(range(100))]
    obj = make(old)
    many = isinstance(obj, PullObjManyTo1Link)
    read = old if many else old[:1]

    def swap() -> None:
        if isinstance(obj, PullObjManyTo1Link):
            obj.sources = list(new)
        else:
            obj.source = new[0]  # type: ignore[attr-defined]

    if leave == "aclose":
        await obj.__anext__()
        swap()
        await obj.aclose()
    else:
        async for _ in obj:
            swap()
            break
        await settle()
    assert obj.closed
    assert all(s.closed for s in read), read
    assert not any(s.pulls for s in new)
