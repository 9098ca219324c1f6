"""Batching push stages: a condition-driven buffer and a fixed-size window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._obj import PushObj
from .._util import PLAIN_TYPES, check_callable, check_int, is_awaitable
from ._serial import PushObjSerial1To1
from ._transform import MaybeAwaitable

__all__ = ["PushBufferObj", "PushWindowObj"]

T = TypeVar("T")


class PushBufferObj(PushObjSerial1To1[T, list[T]]):
    """Collect values in ``buffer``; forward the list when ``check_buffer`` says so.

    Each value is appended, then ``check_buffer(buffer)`` (sync or async) is called;
    a truthy result sends the list downstream and starts a new one.

    On close, a non-empty remainder is flushed downstream before the sink is closed
    (``flush_on_close=True``, the default: nothing is silently dropped, decision
    C3); ``flush_on_close=False`` drops it. ``athrow`` never flushes: the remainder
    stays in ``buffer``. Concurrent sends take turns (see
    :class:`PushObjSerial1To1`): no batch is ever torn or duplicated.

    Args:
        sink: the downstream push object, receiving lists.
        check_buffer: the flush condition (mutable).
        flush_on_close: whether ``aclose`` flushes a partial buffer (mutable).
    """

    def __init__(
        self,
        sink: PushObj[list[T]],
        check_buffer: Callable[[list[T]], MaybeAwaitable[object]],
        *,
        flush_on_close: bool = True,
    ) -> None:
        super().__init__(sink)
        check_callable("check_buffer", check_buffer)
        self.check_buffer = check_buffer
        self.flush_on_close = flush_on_close
        # Invariant: buffer holds the values since the last flush, in arrival order.
        self.buffer: list[T] = []

    async def next_impl(self, value: T) -> None:
        buffer = self.buffer
        buffer.append(value)
        ready: Any = self.check_buffer(buffer)
        if type(ready) not in PLAIN_TYPES and is_awaitable(ready):
            ready = await ready
        if ready:
            self.buffer = []
            if not await self.sink.asend(buffer):
                self._done = True

    async def close_impl(self) -> None:
        # Flush the remainder, then close the sink whatever happened.
        try:
            buffer = self.buffer
            if buffer and self.flush_on_close:
                self.buffer = []
                await self.sink.asend(buffer)
        finally:
            await self.sink.aclose()


class PushWindowObj(PushBufferObj[T]):
    """Forward values in lists of ``window_size`` (a buffer flushed when full).

    A partial window is flushed on close unless ``flush_on_close=False`` (decision
    C3). Changing ``window_size`` affects the window being filled.

    Args:
        sink: the downstream push object, receiving lists.
        window_size: values per window, >= 1 (mutable).
        flush_on_close: whether ``aclose`` flushes a partial window.

    Raises:
        TypeError, ValueError: ``window_size`` is not an int >= 1.
    """

    def __init__(
        self, sink: PushObj[list[T]], window_size: int, *, flush_on_close: bool = True
    ) -> None:
        self.window_size = check_int("window_size", window_size, minimum=1)
        super().__init__(sink, self._is_full, flush_on_close=flush_on_close)

    def _is_full(self, buffer: list[T]) -> bool:
        return len(buffer) >= self.window_size

    async def next_impl(self, value: T) -> None:
        buffer = self.buffer
        buffer.append(value)
        if len(buffer) >= self.window_size:
            self.buffer = []
            if not await self.sink.asend(buffer):
                self._done = True
