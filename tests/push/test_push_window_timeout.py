"""PushWindowTimeoutObj: size or time, timeout_from (decision C17), flush on close,
and no leaked timers or tasks. No timed assertions: tests wait for outcomes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from pullpush import PushWindowTimeoutObj, SinkCollectObj
from pullpush.testing import RecordingSink


async def eventually(condition: Callable[[], object], limit: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), limit)


async def test_full_window_flushes_at_once_without_a_timer() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 3, 60)
    for v in range(3):
        await window.asend(v)
    assert sink.items == [[0, 1, 2]] and window._timer is None
    await window.aclose()


async def test_partial_window_is_flushed_when_the_timeout_expires() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 10, 0.005)
    await window.asend("a")
    await window.asend("b")
    await eventually(lambda: sink.items)
    assert sink.items == [["a", "b"]] and window.buffer == []
    await window.asend("c")
    await eventually(lambda: len(sink.items) == 2)
    assert sink.items == [["a", "b"], ["c"]]
    await window.aclose()
    assert sink.closed and sink.items == [["a", "b"], ["c"]]


async def test_batch_start_is_the_default_and_later_values_do_not_move_the_deadline() -> None:
    window = PushWindowTimeoutObj(SinkCollectObj(), 10, 30)
    assert window.timeout_from == "batch_start"
    await window.asend(1)
    deadline = window._deadline
    await asyncio.sleep(0.002)
    await window.asend(2)
    assert window._deadline == deadline
    await window.aclose()


async def test_last_item_restarts_the_timeout_on_every_value() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 10, 0.02, timeout_from="last_item")
    await window.asend(1)
    deadline = window._deadline
    await asyncio.sleep(0.002)
    await window.asend(2)
    assert window._deadline > deadline
    await eventually(lambda: sink.items)
    assert sink.items == [[1, 2]]
    await window.aclose()


async def test_close_cancels_the_timer_and_flushes_the_partial_window() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 10, 60)
    await window.asend(1)
    timer = window._timer
    assert timer is not None
    await window.aclose()
    assert timer.cancelled() and window._timer is None
    assert sink.items == [[1]] and sink.closed


async def test_flush_on_close_false_drops_the_partial_window() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 10, 60, flush_on_close=False)
    await window.asend(1)
    await window.aclose()
    assert sink.items == [] and sink.closed and window._timer is None


async def test_athrow_cancels_the_timer_and_keeps_the_buffer() -> None:
    sink = RecordingSink()
    window = PushWindowTimeoutObj(sink, 10, 60)
    await window.asend(1)
    await window.athrow(ValueError("x"))
    assert window._timer is None and window.buffer == [1]
    assert isinstance(sink.error_received, ValueError)


async def test_error_in_a_timed_flush_is_raised_by_the_next_call() -> None:
    sink = RecordingSink(fail_at=0)
    window = PushWindowTimeoutObj(sink, 10, 0.001)
    await window.asend(1)
    await eventually(lambda: window._error is not None)
    with pytest.raises(RuntimeError, match="RecordingSink failure"):
        await window.asend(2)  # raised instead of taking the value
    assert await window.asend(3) is True
    await window.aclose()
    assert sink.items == [[3]]


async def test_close_waits_for_a_timed_flush_in_progress() -> None:
    sink = RecordingSink(delay=0.01)
    window = PushWindowTimeoutObj(sink, 10, 0.001)
    await window.asend(1)
    await eventually(lambda: sink._in_flight)  # the timed flush is delivering
    await window.aclose()
    assert sink.items == [[1]] and sink.closed
    assert window._flush_task is not None and window._flush_task.done()


async def test_sends_and_timed_flushes_reassemble_the_input() -> None:
    rng = random.Random(7)
    sink = SinkCollectObj()
    window = PushWindowTimeoutObj(sink, 4, 0.001)
    arrival: list[int] = []

    async def producer(start: int) -> None:
        for v in range(start, start + 25):
            arrival.append(v)
            await window.asend(v)
            await asyncio.sleep(rng.choice([0, 0, 0.001]))

    await asyncio.gather(*(producer(i * 100) for i in range(3)))
    await window.aclose()
    windows = list(sink.buffer)
    assert [v for w in windows for v in w] == arrival
    assert all(0 < len(w) <= 4 for w in windows)


def test_arguments_are_validated() -> None:
    sink = SinkCollectObj()
    with pytest.raises(ValueError, match="window_size"):
        PushWindowTimeoutObj(sink, 0, 1)
    with pytest.raises(ValueError, match="timeout"):
        PushWindowTimeoutObj(sink, 2, 0)
    with pytest.raises(ValueError, match="timeout"):
        PushWindowTimeoutObj(sink, 2, -1)
    with pytest.raises(TypeError, match="timeout"):
        PushWindowTimeoutObj(sink, 2, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_from"):
        PushWindowTimeoutObj(sink, 2, 1, timeout_from="first")  # type: ignore[arg-type]
