"""Type checks of the executors' public surface, run by mypy (``[tool.mypy] files``),
never by pytest (the name does not match ``test_*.py``)."""

from __future__ import annotations

from typing_extensions import assert_type

from pullpush import InlineExecutor, ProcessExecutor, ProcessExecutorStatistics, ThreadExecutor


async def executors_enter_as_themselves() -> None:
    async with ProcessExecutor() as process:
        assert_type(process, ProcessExecutor)
        assert_type(process.statistics(), ProcessExecutorStatistics)
    async with ThreadExecutor() as thread:
        assert_type(thread, ThreadExecutor)
    async with InlineExecutor() as inline:
        assert_type(inline, InlineExecutor)
