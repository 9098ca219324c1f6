"""Stateless one-to-one push operators: map, filter, flatten, flat-map, callbacks.

These stages keep no state between values, so concurrent ``asend`` calls run
concurrently through them (FireFoundry's default); put a :class:`PushSerialObj` in
front when downstream order must follow arrival order. Every callable may be sync
or async: an awaitable result is awaited before the value moves on (decision C22).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

from .._obj import PushObj, PushObj1To1, aclose_quietly
from .._util import PLAIN_TYPES, check_callable, is_awaitable

__all__ = [
    "PushFilterObj",
    "PushFlatMapObj",
    "PushFlattenObj",
    "PushMapObj",
    "PushPostCallbacksObj",
    "PushPreCallbacksObj",
    "feed",
    "is_flattenable",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")

MaybeAwaitable: TypeAlias = T | Awaitable[T]

_NOT_FLATTENED = (str, bytes, bytearray)


def is_flattenable(value: object) -> bool:
    """Return whether flatten expands ``value``: any iterable or async iterable except
    ``str``, ``bytes`` and ``bytearray`` (decision C11)."""
    cls = type(value)
    return (hasattr(cls, "__iter__") or hasattr(cls, "__aiter__")) and not isinstance(
        value, _NOT_FLATTENED
    )


async def feed(items: Any, send: Callable[[Any], Awaitable[object]]) -> bool:
    """``await send(element)`` for each element of an iterable or async iterable.

    Stops early once ``send`` returns a falsy value; an async iterator left early
    is closed (``aclose``), as leaving an ``async for`` over a pull object closes it.

    Returns:
        Whether every element was sent (``False`` when stopped early).
    """
    if not hasattr(type(items), "__aiter__"):
        for item in items:
            if not await send(item):
                return False
        return True
    iterator = items.__aiter__()
    finished = False
    try:
        async for item in iterator:
            if not await send(item):
                return False
        finished = True
    finally:
        if not finished:
            await aclose_quietly(iterator)
    return True


class PushMapObj(PushObj1To1[IN, OUT]):
    """Send ``transform(value)`` downstream for each value.

    Args:
        sink: the downstream push object (mutable: ``sink``).
        transform: a sync or async callable (mutable: ``transform``; a swap takes
            effect on the next value).
    """

    def __init__(self, sink: PushObj[OUT], transform: Callable[[IN], MaybeAwaitable[OUT]]) -> None:
        super().__init__(sink)
        check_callable("transform", transform)
        self.transform = transform

    async def next_impl(self, value: IN) -> None:
        result: Any = self.transform(value)
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            result = await result
        if not await self.sink.asend(result):
            self._done = True


class PushFilterObj(PushObj1To1[T, T]):
    """Forward only the values for which ``filter(value)`` is truthy.

    A dropped value still makes ``asend`` return ``True`` (the stage accepts more).

    Args:
        sink: the downstream push object.
        filter: a sync or async predicate (mutable: ``filter``).
    """

    def __init__(self, sink: PushObj[T], filter: Callable[[T], MaybeAwaitable[object]]) -> None:
        super().__init__(sink)
        check_callable("filter", filter)
        self.filter = filter

    async def next_impl(self, value: T) -> None:
        keep: Any = self.filter(value)
        if type(keep) not in PLAIN_TYPES and is_awaitable(keep):
            keep = await keep
        if keep and not await self.sink.asend(value):
            self._done = True


class PushFlattenObj(PushObj1To1[Any, Any]):
    """Forward each element of an iterable or async iterable value, one level deep.

    Other values -- and ``str``, ``bytes``, ``bytearray`` -- pass through unchanged
    (decision C11). Elements are forwarded in order, each ``asend`` awaited before
    the next element is taken.
    """

    async def next_impl(self, value: Any) -> None:
        if is_flattenable(value):
            if not await feed(value, self.sink.asend):
                self._done = True
        elif not await self.sink.asend(value):
            self._done = True


class PushFlatMapObj(PushObj1To1[IN, Any]):
    """Map each value with ``transform``, then flatten the result one level.

    A result that is an iterable or async iterable (not ``str``/``bytes``) is
    forwarded element by element; any other result is forwarded as is.

    Args:
        sink: the downstream push object.
        transform: a sync or async callable (mutable: ``transform``).
    """

    def __init__(self, sink: PushObj[Any], transform: Callable[[IN], Any]) -> None:
        super().__init__(sink)
        check_callable("transform", transform)
        self.transform = transform

    async def next_impl(self, value: IN) -> None:
        result: Any = self.transform(value)
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            result = await result
        if is_flattenable(result):
            if not await feed(result, self.sink.asend):
                self._done = True
        elif not await self.sink.asend(result):
            self._done = True


def _check_callbacks(callbacks: Iterable[object]) -> list[Callable[[Any], Any]]:
    checked = []
    for i, callback in enumerate(callbacks):
        check_callable(f"callbacks[{i}]", callback)
        checked.append(callback)
    return checked  # type: ignore[return-value]


class PushPreCallbacksObj(PushObj1To1[T, T]):
    """Call every callback with the value, then forward it unchanged.

    Callbacks run in order, each awaited if it returns an awaitable; their results
    are ignored and an exception from one propagates to the sender (the value is
    then not forwarded).

    Args:
        sink: the downstream push object.
        *callbacks: sync or async callables (mutable list: ``callbacks``).
    """

    def __init__(self, sink: PushObj[T], *callbacks: Callable[[T], Any]) -> None:
        super().__init__(sink)
        self.callbacks: list[Callable[[T], Any]] = _check_callbacks(callbacks)

    async def next_impl(self, value: T) -> None:
        for callback in self.callbacks:
            result = callback(value)
            if type(result) not in PLAIN_TYPES and is_awaitable(result):
                await result
        if not await self.sink.asend(value):
            self._done = True


class PushPostCallbacksObj(PushObj1To1[T, T]):
    """Forward the value, then call every callback with it.

    The callbacks run once the downstream ``asend`` has returned (the value has
    gone through everything downstream), in order, each awaited if it returns an
    awaitable; results are ignored.

    Args:
        sink: the downstream push object.
        *callbacks: sync or async callables (mutable list: ``callbacks``).
    """

    def __init__(self, sink: PushObj[T], *callbacks: Callable[[T], Any]) -> None:
        super().__init__(sink)
        self.callbacks: list[Callable[[T], Any]] = _check_callbacks(callbacks)

    async def next_impl(self, value: T) -> None:
        if not await self.sink.asend(value):
            self._done = True
        for callback in self.callbacks:
            result = callback(value)
            if type(result) not in PLAIN_TYPES and is_awaitable(result):
                await result
