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
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Generator
from itertools import islice
from types import CoroutineType, GeneratorType
from typing import Any

from .._exceptions import FinalNotLastError
from .._sync import ParkingLot
from ..runners._envelope import Final

__all__ = ["Credits", "FinalNotLastError", "drive", "needs_driving", "run_sync_step"]


class Credits:
    """A per-task window of INTERMEDIATE envelopes sent but not yet consumed.

    ``await take()`` before producing one; it waits while ``window`` are
    outstanding. ``refund()`` returns a credit that was taken but not used (the stream
    ended instead). ``ack(n)`` returns ``n`` (the consumer read them). This is what
    pauses a streaming task whose consumer stopped reading: the task is paused before
    it computes its next value, not after.

    A value may cost more than one credit (:meth:`charge`, the process executor's
    worker charges large values by their size, so that a task streaming megabyte
    values pauses after a few of them rather than after a window of them). The charge
    is taken once the value was produced (its size is not known before): the window
    can be overshot by the batch being emitted. Values are acknowledged in the order
    they were emitted, so each charge waits in a FIFO under the value's position in
    the stream and is returned with the acknowledgement that covers it.
    """

    __slots__ = ("_acked", "_charges", "_lot", "emitted", "outstanding", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        # Invariant: outstanding = sent - acknowledged (charges included), never negative.
        self.outstanding = 0
        self._lot: ParkingLot | None = None
        self.emitted = 0  # values emitted so far, where charged: the next value's position
        self._acked = 0
        # Invariant: (position, extra credits) of emitted values not yet acknowledged.
        self._charges: deque[tuple[int, int]] | None = None

    async def take(self) -> None:
        await self.wait_for_room()
        self.outstanding += 1

    async def wait_for_room(self) -> None:
        """Wait until fewer than ``window`` are outstanding (take nothing)."""
        while self.outstanding >= self.window:
            if self._lot is None:
                self._lot = ParkingLot()
            await self._lot.park()

    def refund(self) -> None:
        self.outstanding -= 1

    def charge(self, position: int, extra: int) -> None:
        """The value at ``position`` in the stream costs ``extra`` credits beyond its
        own, returned with its acknowledgement."""
        if extra:
            self.outstanding += extra
            if self._charges is None:
                self._charges = deque()
            self._charges.append((position, extra))

    def ack(self, count: int = 1) -> None:
        self._acked = acked = self._acked + count
        charges = self._charges
        if charges:
            while charges and charges[0][0] < acked:
                count += charges.popleft()[1]
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
    emit: Callable[[list[Any]], None],
    credits: Credits | None = None,
    yield_every: float | None = None,
) -> Any:
    """Drive what a task runner returned to its FINAL value, calling ``emit(values)``
    with its INTERMEDIATE values: a non-empty list each time, in the order produced,
    each value covered by a credit taken before it was computed (when ``credits`` is
    given).

    A sync generator runs on the loop between its yields and its values are emitted
    in batches: when half the credit window is spent (so the consumer can take one
    batch while the next is computed), when the generator ends or fails
    (the values before an error are emitted before it propagates), and, with
    ``yield_every``, at a loop turn taken whenever that many seconds passed since the
    last one (so a worker still reads cancellations and flushes progress while a
    CPU-bound generator runs). The clock is read every value while values are slow
    and every few (up to ``MAX_STRIDE``) while they come fast; while values are slow,
    and for the first one, each is emitted (with a loop turn) as soon as it is
    yielded. An async iterable's values are emitted one at a time, as they arrive.
    """
    if hasattr(type(result), "__await__"):
        result = await result
        if not needs_driving(result):
            return result
    if type(result) is GeneratorType:
        return await _drive_sync(result, emit, credits, yield_every)
    if hasattr(type(result), "__aiter__"):
        return await _drive_async(result, emit, credits)
    return result


MAX_STRIDE = 16
"""Most values a sync generator produces between two looks at the clock."""


async def _drive_sync(
    generator: Generator[Any, None, Any],
    emit: Callable[[list[Any]], None],
    credits: Credits | None,
    yield_every: float | None,
) -> Any:
    # The hot loop of a streaming task. Values are pulled ``stride`` at a time by
    # list.extend(islice(...)), a loop in C; the generator runs behind a ``yield from``
    # wrapper that keeps its return value. Credits are settled per batch: nothing else
    # runs on this loop until it awaits, so no acknowledgement can interleave.
    if credits is None:
        credits = Credits(sys.maxsize)
    # A batch holds at most half the window, so the consumer can read one batch (and
    # send its credits back) while the task computes the next.
    half_window = max(1, credits.window // 2)
    returned: list[Any] = []
    values = _keep_return_value(generator, returned)
    clock = time.perf_counter
    fast, slow = (yield_every or 0.0) / 16, (yield_every or 0.0) / 4
    stride = 1  # values between two looks at the clock
    last_turn = last_look = clock()
    batch: list[Any] = []
    try:
        while True:
            room = credits.window - credits.outstanding
            if room <= 0:
                await credits.wait_for_room()
                continue
            if room > half_window:
                room = half_window
            turn_due = False
            if yield_every is None:
                batch.extend(islice(values, room))
            else:
                while room:
                    chunk = stride if stride < room else room
                    batch.extend(islice(values, chunk))
                    if returned:
                        break
                    room -= chunk
                    now = clock()
                    gap, last_look = now - last_look, now
                    # Slow values (and the first) go out one by one, at once.
                    due = stride == 1 or now - last_turn > yield_every
                    if gap < fast:
                        stride = min(2 * stride, MAX_STRIDE)
                    elif gap > slow:
                        stride = 1
                    if due:
                        turn_due = True
                        break
            if batch:
                # Invariant: outstanding counts every value emitted and not acknowledged.
                credits.outstanding += len(batch)
                out, batch = batch, []
                emit(out)
            if returned:
                return returned[0]
            if turn_due:
                await asyncio.sleep(0)
                last_turn = last_look = clock()
    except BaseException:
        # The values produced before the error are delivered before it.
        if batch:
            credits.outstanding += len(batch)
            out, batch = batch, []
            emit(out)
        raise
    finally:
        values.close()
        generator.close()  # in case the wrapper never started


def _keep_return_value(
    generator: Generator[Any, None, Any], returned: list[Any]
) -> Generator[Any, None, None]:
    returned.append((yield from generator))


async def _drive_async(
    stream: AsyncIterable[Any], emit: Callable[[list[Any]], None], credits: Credits | None
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
            emit([item])
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return final
