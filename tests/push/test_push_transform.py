"""Stateless one-to-one push operators: map, filter, flatten, flat-map, callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pullpush import (
    PushFilterObj,
    PushFlatMapObj,
    PushFlattenObj,
    PushMapObj,
    PushPostCallbacksObj,
    PushPreCallbacksObj,
    SinkCollectObj,
)
from pullpush.testing import RecordingSink


async def send_all(obj: Any, values: Any) -> list[bool]:
    return [await obj.asend(v) for v in values]


async def test_map_sync_and_async() -> None:
    sink = RecordingSink()
    await send_all(PushMapObj(sink, lambda n: n * 2), [1, 2, 3])

    async def plus_one(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    await send_all(PushMapObj(sink, plus_one), [10])
    assert sink.items == [2, 4, 6, 11]


async def test_map_transform_is_mutable() -> None:
    sink = SinkCollectObj()
    stage = PushMapObj(sink, str)
    await stage.asend(1)
    stage.transform = lambda n: -n
    await stage.asend(1)
    assert sink.buffer == ["1", -1]


async def test_map_forwards_close_and_throw() -> None:
    sink = RecordingSink()
    await PushMapObj(sink, str).aclose()
    assert sink.closed
    sink2 = RecordingSink()
    error = ValueError("boom")
    await PushMapObj(sink2, str).athrow(error)
    assert sink2.error_received is error


async def test_stage_is_done_once_its_sink_is() -> None:
    sink = RecordingSink(done_after=2)
    stage = PushMapObj(sink, str)
    assert await send_all(stage, [1, 2, 3]) == [True, False, False]
    assert sink.items == ["1", "2"] and stage.done


async def test_filter_sync_and_async_predicates() -> None:
    sink = RecordingSink()
    stage = PushFilterObj(sink, lambda n: n % 2)
    assert await send_all(stage, [1, 2, 3]) == [True, True, True]

    async def big(n: int) -> bool:
        return n > 10

    stage.filter = big
    await send_all(stage, [5, 50])
    assert sink.items == [1, 3, 50]


async def test_flatten_one_level_any_iterable_but_strings() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 7
        yield 8

    sink = RecordingSink()
    stage = PushFlattenObj(sink)
    await send_all(stage, [[1, [2]], (3,), range(4, 6), "ab", b"cd", bytearray(b"e"), 6, agen()])
    assert sink.items == [1, [2], 3, 4, 5, "ab", b"cd", bytearray(b"e"), 6, 7, 8]


async def test_flatten_stops_and_closes_async_iterator_when_sink_is_done() -> None:
    closed = []

    async def agen() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    sink = RecordingSink(done_after=3)
    stage = PushFlattenObj(sink)
    assert await stage.asend(agen()) is False
    assert sink.items == [0, 1, 2] and closed == [True] and stage.done


async def test_flatten_stops_sync_iteration_when_sink_is_done() -> None:
    sink = RecordingSink(done_after=2)
    stage = PushFlattenObj(sink)
    assert await stage.asend(iter(range(10))) is False
    assert sink.items == [0, 1]


async def test_flat_map_flattens_iterable_results_and_passes_others() -> None:
    async def pair(n: int) -> list[int]:
        return [n, n]

    sink = RecordingSink()
    await send_all(PushFlatMapObj(sink, lambda n: range(n) if n < 3 else "xyz"), [0, 2, 5])
    await send_all(PushFlatMapObj(sink, pair), [9])
    await send_all(PushFlatMapObj(sink, lambda n: None), [1])
    assert sink.items == [0, 1, "xyz", 9, 9, None]


async def test_pre_callbacks_run_before_and_post_after_forwarding() -> None:
    log: list[str] = []

    class Sink(SinkCollectObj[Any]):
        async def next_impl(self, value: Any) -> None:
            log.append(f"sink {value}")

    async def async_cb(v: int) -> None:
        log.append(f"async {v}")

    pre = PushPreCallbacksObj(Sink(), lambda v: log.append(f"pre {v}"), async_cb)
    post = PushPostCallbacksObj(pre, lambda v: log.append(f"post {v}"))
    await post.asend(1)
    assert log == ["pre 1", "async 1", "sink 1", "post 1"]


async def test_pre_callback_error_stops_the_value() -> None:
    sink = RecordingSink()

    def fail(v: int) -> None:
        raise KeyError(v)

    stage = PushPreCallbacksObj(sink, fail)
    with pytest.raises(KeyError):
        await stage.asend(1)
    assert sink.items == [] and not stage.done


def test_constructors_validate_arguments() -> None:
    sink = SinkCollectObj()
    with pytest.raises(TypeError, match="transform"):
        PushMapObj(sink, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filter"):
        PushFilterObj(sink, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transform"):
        PushFlatMapObj(sink, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        PushPreCallbacksObj(sink, print, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        PushPostCallbacksObj(sink, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sink"):
        PushMapObj([], str)  # type: ignore[arg-type]


async def test_stateless_stages_let_concurrent_sends_overlap() -> None:
    sink = RecordingSink(yield_to_loop=True)
    stage = PushMapObj(sink, str)
    await asyncio.gather(*(stage.asend(i) for i in range(5)))
    assert sorted(sink.items) == ["0", "1", "2", "3", "4"]
    assert sink.max_in_flight > 1
