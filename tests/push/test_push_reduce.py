"""PushReduceObj (accumulator, value) and PushBufferReduceObj (decision C16)."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Iterator

import pytest

from pullpush import UNSEEDED, PushBufferReduceObj, PushReduceObj, SinkCollectObj
from pullpush.testing import RecordingSink


async def test_reduce_takes_accumulator_then_value_and_forwards_each_accumulator() -> None:
    sink = RecordingSink()
    stage = PushReduceObj(sink, lambda acc, v: [*acc, v], [])
    for v in "abc":
        await stage.asend(v)
    assert sink.items == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert stage.accum == ["a", "b", "c"]


async def test_reduce_without_initial_starts_from_the_first_value() -> None:
    sink = RecordingSink()
    stage = PushReduceObj(sink, operator.sub)
    assert stage.accum is UNSEEDED
    for v in [10, 1, 2]:
        await stage.asend(v)
    assert sink.items == [10, 9, 7]


async def test_reduce_async_reducer_and_reset_by_assignment() -> None:
    async def add(acc: int, v: int) -> int:
        await asyncio.sleep(0)
        return acc + v

    sink = RecordingSink()
    stage = PushReduceObj(sink, add, 0)
    await stage.asend(5)
    stage.accum = 100
    await stage.asend(5)
    assert sink.items == [5, 105]


async def test_reduce_error_keeps_the_previous_accumulator() -> None:
    def picky(acc: int, v: int) -> int:
        if v < 0:
            raise ValueError(v)
        return acc + v

    sink = RecordingSink()
    stage = PushReduceObj(sink, picky, 0)
    await stage.asend(1)
    with pytest.raises(ValueError):
        await stage.asend(-1)
    await stage.asend(2)
    assert sink.items == [1, 3]


async def test_concurrent_sends_with_an_async_reducer_fold_every_value_once() -> None:
    # Without turns, two reducers would read the same accumulator and lose an update.
    async def slow_add(acc: int, v: int) -> int:
        await asyncio.sleep(0)
        return acc + v

    sink = RecordingSink()
    stage = PushReduceObj(sink, slow_add, 0)
    await asyncio.gather(*(stage.asend(1) for _ in range(50)))
    assert stage.accum == 50
    assert sink.items == list(range(1, 51))


async def test_buffer_reduce_accepts_any_iterable_result() -> None:
    def gen(v: int) -> Iterator[int]:
        yield from range(v)

    async def agen(v: int) -> AsyncIterator[str]:
        yield f"a{v}"

    async def coro(v: int) -> list[int]:
        return [v, v]

    sink = RecordingSink()
    for reducer, value in [(gen, 3), (agen, 1), (coro, 7), (lambda v: (), 0), (lambda v: None, 0)]:
        await PushBufferReduceObj(sink, reducer).asend(value)
    assert sink.items == [0, 1, 2, "a1", 7, 7]


async def test_buffer_reduce_with_closure_state_emits_pairs() -> None:
    pending: list[int] = []

    def pairs(v: int) -> list[list[int]]:
        pending.append(v)
        if len(pending) == 2:
            out = [pending[:]]
            pending.clear()
            return out
        return []

    sink = SinkCollectObj()
    stage = PushBufferReduceObj(sink, pairs)
    await asyncio.gather(*(stage.asend(i) for i in range(6)))
    assert sink.buffer == [[0, 1], [2, 3], [4, 5]]


async def test_buffer_reduce_rejects_non_iterable_results() -> None:
    stage = PushBufferReduceObj(SinkCollectObj(), lambda v: v)
    with pytest.raises(TypeError, match="iterable"):
        await stage.asend(5)
    with pytest.raises(TypeError, match="iterable"):
        await stage.asend("text")


async def test_buffer_reduce_stops_when_the_sink_is_done() -> None:
    sink = RecordingSink(done_after=2)
    stage = PushBufferReduceObj(sink, lambda v: range(v))
    assert await stage.asend(10) is False
    assert sink.items == [0, 1]


def test_reducers_must_be_callable() -> None:
    with pytest.raises(TypeError, match="reducer"):
        PushReduceObj(SinkCollectObj(), 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reducer"):
        PushBufferReduceObj(SinkCollectObj(), None)  # type: ignore[arg-type]
