"""The inline executor, the standalone Executor API and the driving of runner kinds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    ExecutorClosedError,
    Final,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    TaskTimeoutError,
)
from pullpush._exceptions import FinalNotLastError
from pullpush._util import is_awaitable
from pullpush.executors._drive import needs_driving
from pullpush.testing import collect


async def test_run_returns_the_final_value_or_raises() -> None:
    async with InlineExecutor() as executor:
        assert await executor.run(pow, 2, 10) == 1024

        async def fails() -> None:
            raise LookupError("missing")

        with pytest.raises(LookupError, match="missing"):
            await executor.run(fails)


async def test_stream_yields_intermediates_then_the_final() -> None:
    def progress(n: int) -> Generator[int, None, str]:
        yield from range(n)
        return "done"

    async with InlineExecutor() as executor:
        envelopes = await collect(executor.stream(progress, 3))
    assert [(e.type.value, e.value) for e in envelopes] == [
        ("INTERMEDIATE", 0),
        ("INTERMEDIATE", 1),
        ("INTERMEDIATE", 2),
        ("FINAL", "done"),
    ]


async def test_leaving_a_stream_early_cancels_the_task() -> None:
    finished = []

    async def endless() -> AsyncGenerator[int, None]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            finished.append(True)

    async with InlineExecutor() as executor:
        stream = executor.stream(endless)
        assert (await stream.__anext__()).value == 0
        await stream.aclose()
    assert finished == [True]


async def test_final_must_be_the_last_item() -> None:
    async def wrong() -> AsyncGenerator[Any, None]:
        yield Final(1)
        yield 2

    async with InlineExecutor() as executor:
        with pytest.raises(FinalNotLastError, match="Final must be last"):
            await executor.run(wrong)


async def test_a_closed_executor_refuses_work() -> None:
    executor = InlineExecutor()
    await executor.aclose()
    with pytest.raises(ExecutorClosedError):
        await executor.run(print)


async def test_closing_cancels_running_tasks_with_an_error() -> None:
    executor = InlineExecutor()
    await executor.start()
    stream = executor.stream(asyncio.sleep, 60)
    pending = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    await executor.aclose()
    with pytest.raises(ExecutorClosedError):
        await pending
    await stream.aclose()


def test_generators_are_driven_even_after_the_awaitable_check_saw_them() -> None:
    # Regression: the awaitable check caches non-awaitable types; a generator type it
    # cached must still count as a stream.
    def gen() -> Generator[int, None, None]:
        yield 1

    async def agen() -> AsyncGenerator[int, None]:
        yield 1

    g, a = gen(), agen()
    assert not is_awaitable(g) and not is_awaitable(a)
    assert needs_driving(g) and needs_driving(a)
    assert not needs_driving(5) and not needs_driving([1])
    g.close()


async def test_envelope_types_compare_as_strings() -> None:
    async with InlineExecutor() as executor:
        (envelope,) = await collect(executor.stream(lambda: 7))
    assert envelope.type == "FINAL" and envelope.type is EnvelopeType.FINAL


class CloseError(Exception):
    pass


async def test_fix_a_timed_out_task_ends_with_the_timeout_whatever_it_does_as_it_stops() -> None:
    # Found by the stress suite: a cancelled task that did not end with CancelledError
    # -- one that caught it and returned, or a generator whose ``finally`` raised --
    # ended with its own value or error, against the executor contract (the cancel's
    # error wins, as in the thread executor).
    async def swallows() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    def gen() -> Generator[int, None, None]:
        try:
            while True:
                yield 0
        finally:
            raise CloseError("raised while closing")

    async def agen() -> AsyncGenerator[int, None]:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield 0
        finally:
            raise CloseError("raised while closing")

    runner = HierarchicalTaskPoolRunner(
        "stops", [swallows, gen, agen], CapacitySource(3), timeout=0.05
    )
    ends = {e.task_id: e for e in await collect(runner.run_tasks()) if e.type != "INTERMEDIATE"}
    assert [type(ends[i].error) for i in range(3)] == [TaskTimeoutError] * 3
    assert [type(ends[i].error.__context__) for i in (1, 2)] == [CloseError] * 2


@pytest.mark.parametrize(("window", "error"), [(0, ValueError), (-5, ValueError), ("8", TypeError)])
def test_fix_a_credit_window_below_one_is_rejected(window: Any, error: type[Exception]) -> None:
    # Found by the stress suite: InlineExecutor(credit_window=0) was accepted, and every
    # streaming task then waited forever for a credit.
    with pytest.raises(error, match="credit_window"):
        InlineExecutor(credit_window=window)
