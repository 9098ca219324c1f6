"""Run one task runner and report what it produces: the semantics of SPEC 2's table,
written once and used by every executor (inline, thread, and inside each worker
process).

| the runner is / returns                    | INTERMEDIATE   | FINAL value            |
|--------------------------------------------|----------------|------------------------|
| plain function (value)                     | none           | the return value       |
| coroutine function / awaitable             | none           | the awaited result     |
| sync generator                             | one per yield  | its ``return`` value   |
| async generator or other async iterable    | one per item   | a yielded ``Final(x)`` |
| awaitable resolving to an async iterable   | one per item   | as above               |
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from types import CoroutineType, GeneratorType
from typing import Any

from .._envelope import Final
from .._sync import ParkingLot

__all__ = ["Credits", "FinalNotLastError", "drive", "needs_driving", "run_sync_step"]


class FinalNotLastError(ValueError):
    """An async-generator task runner yielded something after ``Final(x)``."""


class Credits:
    """A per-task window of INTERMEDIATE envelopes sent but not yet consumed.

    ``await take()`` before producing one; it waits while ``window`` are
    outstanding. ``refund()`` returns a credit that was taken but not used (the stream
    ended instead). ``ack(n)`` returns ``n`` (the consumer read them). This is what
    pauses a streaming task whose consumer stopped reading: the task is paused before
    it computes its next value, not after.
    """

    __slots__ = ("_lot", "outstanding", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        # Invariant: outstanding = sent - acknowledged, never negative.
        self.outstanding = 0
        self._lot: ParkingLot | None = None

    async def take(self) -> None:
        while self.outstanding >= self.window:
            if self._lot is None:
                self._lot = ParkingLot()
            await self._lot.park()
        self.outstanding += 1

    def refund(self) -> None:
        self.outstanding -= 1

    def ack(self, count: int = 1) -> None:
        self.outstanding = max(0, self.outstanding - count)
        if self._lot is not None and self.outstanding < self.window:
            self._lot.unpark_all()


_FINAL_TYPES: set[type] = {int, float, complex, str, bytes, bool, type(None), tuple, list, dict}
"""Types whose values are FINAL values as they are; learned as they are seen."""


def needs_driving(value: object) -> bool:
    """Whether a runner's result must go through :func:`drive` (an awaitable, a sync
    generator or an async iterable) rather than being the FINAL value itself."""
    kind = type(value)
    if kind in _FINAL_TYPES:
        return False
    if (
        kind is CoroutineType
        or kind is GeneratorType
        or hasattr(kind, "__await__")
        or hasattr(kind, "__aiter__")
    ):
        return True
    if len(_FINAL_TYPES) < 4096:
        _FINAL_TYPES.add(kind)
    return False


def run_sync_step(runner: Callable[[], Any]) -> tuple[bool, Any]:
    """Call ``runner``; return ``(True, value)`` if that already is the FINAL value,
    ``(False, result)`` if the result still has to be driven by :func:`drive`."""
    result = runner()
    return not needs_driving(result), result


async def drive(
    result: Any,
    emit: Callable[[Any], None],
    credits: Credits | None = None,
    yield_every: float | None = None,
) -> Any:
    """Drive what a task runner returned to its FINAL value, calling ``emit(value)``
    for each INTERMEDIATE value (after taking a credit, when ``credits`` is given).

    A sync generator runs on the loop between its yields; with ``yield_every`` the
    loop gets a turn whenever that many seconds passed since the last one (so a
    worker still reads cancellations while a CPU-bound generator runs).
    """
    if hasattr(type(result), "__await__"):
        result = await result
        if not needs_driving(result):
            return result
    if type(result) is GeneratorType:
        clock = time.perf_counter
        last_turn = clock()
        try:
            while True:
                if credits is not None:
                    await credits.take()
                try:
                    item = next(result)
                except StopIteration as stop:
                    if credits is not None:
                        credits.refund()
                    return stop.value
                emit(item)
                if yield_every is not None and clock() - last_turn > yield_every:
                    await asyncio.sleep(0)
                    last_turn = clock()
        finally:
            result.close()
    if hasattr(type(result), "__aiter__"):
        return await _drive_async(result, emit, credits)
    return result


async def _drive_async(
    stream: AsyncIterable[Any], emit: Callable[[Any], None], credits: Credits | None
) -> Any:
    iterator = stream.__aiter__()
    final: Any = None
    finished = False
    try:
        while True:
            if credits is not None:
                await credits.take()
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                if credits is not None:
                    credits.refund()
                break
            if finished:
                raise FinalNotLastError(
                    f"a task runner yielded {item!r} after Final(...); Final must be last"
                )
            if isinstance(item, Final):
                if credits is not None:
                    credits.refund()
                final, finished = item.value, True
                continue
            emit(item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return final
