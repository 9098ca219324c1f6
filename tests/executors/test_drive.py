"""drive(): how every executor turns what a task runner returned into batches of
INTERMEDIATE values and a FINAL value, under a credit window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

from pullpush import Final
from pullpush.executors._drive import MAX_STRIDE, Credits, drive


class Batches:
    """An ``emit`` that records each batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __call__(self, values: list[Any]) -> None:
        assert values, "drive never emits an empty batch"
        self.batches.append(values)

    @property
    def values(self) -> list[Any]:
        return [v for batch in self.batches for v in batch]


def counting(n: int, result: Any = "done") -> Generator[int, None, Any]:
    yield from range(n)
    return result


async def test_a_sync_generator_gives_every_value_in_order_and_its_return_value() -> None:
    emit = Batches()
    assert await drive(counting(1000), emit) == "done"
    assert emit.values == list(range(1000))


async def test_batches_hold_at_most_half_the_credit_window() -> None:
    emit = Batches()
    credits = Credits(8)

    async def consume() -> None:
        # A consumer that acknowledges whatever was emitted, as the runner does.
        while credits.outstanding or not emit.batches:
            credits.ack(credits.outstanding)
            await asyncio.sleep(0)

    consumer = asyncio.ensure_future(consume())
    assert await drive(counting(100), emit, credits) == "done"
    await consumer
    assert emit.values == list(range(100))
    assert max(len(b) for b in emit.batches) <= 4


async def test_no_value_is_computed_without_a_credit() -> None:
    computed: list[int] = []

    def tracked() -> Generator[int, None, None]:
        for i in range(100):
            computed.append(i)
            yield i

    emit = Batches()
    credits = Credits(6)
    driving = asyncio.ensure_future(drive(tracked(), emit, credits))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not driving.done()
    assert len(computed) == 6 and emit.values == list(range(6))  # paused at the window
    credits.ack(2)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(computed) == 8 and emit.values == list(range(8))
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving


async def test_values_before_an_error_are_emitted_before_it_propagates() -> None:
    def fails_after(n: int) -> Generator[int, None, None]:
        yield from range(n)
        raise LookupError("after the values")

    emit = Batches()
    with pytest.raises(LookupError, match="after the values"):
        await drive(fails_after(5), emit)
    assert emit.values == [0, 1, 2, 3, 4]


async def test_the_generator_is_closed_when_driving_is_cancelled() -> None:
    closed: list[bool] = []

    def endless() -> Generator[int, None, None]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    credits = Credits(4)
    driving = asyncio.ensure_future(drive(endless(), Batches(), credits))
    await asyncio.sleep(0.01)
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving
    assert closed == [True]


async def test_a_generator_closed_before_its_first_value_is_closed_too() -> None:
    started: list[bool] = []

    def never_started() -> Generator[int, None, None]:
        started.append(True)
        yield 1

    generator = never_started()
    credits = Credits(1)
    credits.outstanding = 1  # no credit: drive parks before pulling anything
    driving = asyncio.ensure_future(drive(generator, Batches(), credits))
    await asyncio.sleep(0)
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving
    assert started == []
    with pytest.raises(StopIteration):
        next(generator)  # closed


async def test_a_cpu_bound_generator_gives_the_loop_turns() -> None:
    turns = 0
    stop = False

    async def ticker() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    def slow_values() -> Generator[int, None, None]:
        for i in range(20):
            deadline = asyncio.get_running_loop().time() + 0.002
            while asyncio.get_running_loop().time() < deadline:
                pass
            yield i

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    before = turns
    emit = Batches()
    await drive(slow_values(), emit, Credits(1000), yield_every=0.005)
    stop = True
    await ticking
    assert emit.values == list(range(20))
    assert turns - before >= 4  # about one turn per 5 ms of the 40 ms it ran
    assert len(emit.batches) >= 4  # and its values went out at each turn


async def test_fast_values_are_pulled_several_at_a_time() -> None:
    emit = Batches()
    await drive(counting(10_000), emit, None, yield_every=10.0)
    assert emit.values == list(range(10_000))
    assert MAX_STRIDE > 1


async def test_an_async_generator_emits_each_value_and_a_final_one() -> None:
    async def stream() -> AsyncGenerator[Any, None]:
        for i in range(3):
            yield i
            await asyncio.sleep(0)
        yield Final("end")

    emit = Batches()
    assert await drive(stream(), emit, Credits(10)) == "end"
    assert emit.batches == [[0], [1], [2]]


async def test_a_plain_value_and_an_awaitable_need_no_driving() -> None:
    emit = Batches()
    assert await drive(42, emit) == 42

    async def later() -> int:
        return 7

    assert await drive(later(), emit) == 7
    assert emit.batches == []
