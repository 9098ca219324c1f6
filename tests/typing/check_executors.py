"""Type checks of the executors' public surface, run by mypy (``[tool.mypy] files``),
never by pytest (the name does not match ``test_*.py``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from typing_extensions import assert_type

from pullpush import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    ProcessExecutorStatistics,
    TaskProgressEnvelope,
    ThreadExecutor,
)


async def executors_enter_as_themselves() -> None:
    async with ProcessExecutor() as process:
        assert_type(process, ProcessExecutor)
        assert_type(process.statistics(), ProcessExecutorStatistics)
    async with ThreadExecutor() as thread:
        assert_type(thread, ThreadExecutor)
    async with InlineExecutor() as inline:
        assert_type(inline, InlineExecutor)


def scale(x: int, *, by: str = "") -> float:
    return x * 1.5


async def fetch(url: str) -> bytes:
    return url.encode()


def counting(n: int) -> Generator[int, None, str]:
    yield n
    return "counted"


async def run_is_typed(executor: Executor) -> None:
    assert_type(await executor.run(scale, 1, by="a"), float)
    assert_type(await executor.run(fetch, "u"), bytes)
    assert_type(await executor.run(counting, 3), str)
    assert_type(await executor.run(lambda: [1]), list[int])
    async for envelope in executor.stream(scale, 2):
        assert_type(envelope, TaskProgressEnvelope[Any, None])
    await executor.run(scale, "1")  # type: ignore[call-overload]
    await executor.run(scale, 1, by=2)  # type: ignore[arg-type]
    await executor.run(fetch)  # type: ignore[call-overload]
    await executor.stream(scale, "1").__anext__()  # type: ignore[arg-type]
    result = await executor.run(scale, 1)
    text: str = result  # type: ignore[assignment]
    del text
