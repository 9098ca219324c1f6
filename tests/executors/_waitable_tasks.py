"""Waitable task runners for the process executor tests (pickled by value: the test
modules register this module with cloudpickle)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pullpush import TaskContext


async def metered(
    ctx: TaskContext, receives: int, turns: int, fail: bool
) -> tuple[list[Any], list[tuple[float, float]]]:
    """Receive ``receives`` messages; return them with the intervals (monotonic
    clock, the same in every process) in which the task was active, i.e. not waiting
    in ``receive``. A failing task raises ValueError((task_id, intervals))."""
    got: list[Any] = []
    intervals: list[tuple[float, float]] = []
    since = time.monotonic()
    for _ in range(receives):
        for _ in range(turns):
            await asyncio.sleep(0)
        intervals.append((since, time.monotonic()))
        got.append(await ctx.receive())
        since = time.monotonic()
    intervals.append((since, time.monotonic()))
    if fail:
        raise ValueError(ctx.task_id, intervals)
    return got, intervals


async def receive_once(ctx: TaskContext, timeout: float | None = None) -> Any:
    try:
        return await ctx.receive(timeout=timeout)
    except TimeoutError:
        return "timed out"


def blocking(ctx: TaskContext) -> Any:
    return ctx.receive_blocking()
