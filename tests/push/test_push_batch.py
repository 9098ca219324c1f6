"""PushBufferObj and PushWindowObj: flush conditions, flush on close (decision C3),
and concurrent sends."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import PushBufferObj, PushMapObj, PushWindowObj, SinkCollectObj
from pullpush.testing import RecordingSink
from pullpush.testing import run as run_on_loop


async def test_window_flushes_full_windows_and_the_remainder_on_close() -> None:
    sink = RecordingSink()
    window = PushWindowObj(sink, 3)
    for v in range(7):
        await window.asend(v)
    assert sink.items == [[0, 1, 2], [3, 4, 5]]
    await window.aclose()
    assert sink.items == [[0, 1, 2], [3, 4, 5], [6]] and sink.closed


async def test_window_flush_on_close_false_drops_the_remainder() -> None:
    sink = RecordingSink()
    window = PushWindowObj(sink, 3, flush_on_close=False)
    for v in range(4):
        await window.asend(v)
    await window.aclose()
    assert sink.items == [[0, 1, 2]] and sink.closed


async def test_window_athrow_keeps_the_remainder_in_buffer() -> None:
    sink = RecordingSink()
    window = PushWindowObj(sink, 3)
    await window.asend(1)
    error = RuntimeError("x")
    await window.athrow(error)
    assert sink.items == [] and sink.error_received is error and window.buffer == [1]


async def test_buffer_example_with_length_condition() -> None:
    sink = RecordingSink()
    buffer = PushBufferObj(sink, lambda buf: len(buf) >= 3)
    for v in [1, 2, 3, 4]:
        await buffer.asend(v)
    await buffer.aclose()
    assert sink.items == [[1, 2, 3], [4]]


async def test_buffer_async_condition_and_mutable_fields() -> None:
    async def on_marker(buf: list[str]) -> bool:
        await asyncio.sleep(0)
        return buf[-1] == "|"

    sink = RecordingSink()
    buffer = PushBufferObj(sink, on_marker)
    for v in "ab|c":
        await buffer.asend(v)
    assert sink.items == [["a", "b", "|"]] and buffer.buffer == ["c"]
    buffer.flush_on_close = False
    await buffer.aclose()
    assert sink.items == [["a", "b", "|"]]


async def test_closing_an_empty_window_sends_nothing() -> None:
    sink = RecordingSink()
    await PushWindowObj(sink, 2).aclose()
    assert sink.items == [] and sink.closed


async def test_close_still_closes_the_sink_when_the_flush_fails() -> None:
    sink = RecordingSink(fail_at=0)
    window = PushWindowObj(sink, 5)
    await window.asend(1)
    with pytest.raises(RuntimeError):
        await window.aclose()
    assert sink.closed


async def test_concurrent_sends_never_tear_a_window() -> None:
    sink = RecordingSink(yield_to_loop=True)
    window = PushWindowObj(sink, 10)
    await asyncio.gather(*(window.asend(i) for i in range(95)))
    await window.aclose()
    assert [len(w) for w in sink.items] == [10] * 9 + [5]
    assert [v for w in sink.items for v in w] == list(range(95))
    assert sink.max_in_flight == 1


async def test_concurrent_sends_with_async_condition_flush_each_batch_once() -> None:
    async def three(buf: list[int]) -> bool:
        await asyncio.sleep(0)
        return len(buf) >= 3

    sink = RecordingSink()
    buffer = PushBufferObj(sink, three)
    await asyncio.gather(*(buffer.asend(i) for i in range(9)))
    assert sink.items == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_window_size_is_validated() -> None:
    sink = SinkCollectObj()
    with pytest.raises(ValueError, match="window_size"):
        PushWindowObj(sink, 0)
    with pytest.raises(ValueError, match="window_size"):
        PushWindowObj(sink, -2)
    with pytest.raises(TypeError, match="window_size"):
        PushWindowObj(sink, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="check_buffer"):
        PushBufferObj(sink, 3)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(), max_size=60),
    size=st.integers(min_value=1, max_value=7),
    producers=st.integers(min_value=1, max_value=4),
)
def test_window_plus_flush_reassembles_the_input(
    loop_kind: str, values: list[int], size: int, producers: int
) -> None:
    async def scenario() -> None:
        sink = SinkCollectObj()

        async def hop(v: int) -> int:
            await asyncio.sleep(0)
            return v

        window = PushWindowObj(PushMapObj(sink, hop), size)
        arrival: list[int] = []
        chunks = [values[i::producers] for i in range(producers)]

        async def producer(chunk: list[int]) -> None:
            for v in chunk:
                arrival.append(v)
                await window.asend(v)

        await asyncio.gather(*(producer(c) for c in chunks))
        await window.aclose()
        windows = list(sink.buffer)
        assert [v for w in windows for v in w] == arrival
        assert all(len(w) == size for w in windows[:-1])
        assert all(0 < len(w) <= size for w in windows)

    run_on_loop(scenario(), loop=loop_kind)
