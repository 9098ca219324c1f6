"""Terminal push objects."""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Any, TypeVar

from .._obj import SinkObj
from .._util import PLAIN_TYPES, check_callable, is_awaitable

__all__ = ["SinkCallbacksObj", "SinkCollectObj"]

T = TypeVar("T")


class SinkCollectObj(SinkObj[T]):
    """Append every value to ``buffer`` (a list by default; may be swapped).

    After :meth:`athrow`, the error is kept in :attr:`error`.
    """

    def __init__(self, buffer: MutableSequence[T] | None = None) -> None:
        super().__init__()
        self.buffer: MutableSequence[T] = [] if buffer is None else buffer
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return len(self.buffer)

    async def next_impl(self, value: T) -> None:
        self.buffer.append(value)

    async def throw_impl(self, error: BaseException) -> None:
        self.error = error


class SinkCallbacksObj(SinkObj[T]):
    """Call every callback (sync or async; async ones are awaited) with each value.

    Return values are ignored; ``callbacks`` is a mutable list.
    """

    def __init__(self, *callbacks: Callable[[T], Any]) -> None:
        super().__init__()
        for i, callback in enumerate(callbacks):
            check_callable(f"callbacks[{i}]", callback)
        self.callbacks: list[Callable[[T], Any]] = list(callbacks)

    async def next_impl(self, value: T) -> None:
        for callback in self.callbacks:
            result = callback(value)
            if type(result) not in PLAIN_TYPES and is_awaitable(result):
                await result
