"""One-to-one pull operators that transform items: map, flat-map, filter, reduce,
buffer-reduce, flatten and callbacks.

Every callable may be sync or async: a result that is awaitable is awaited.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

from .._obj import PullObj1To1Link, pull_iter
from .._util import PLAIN_TYPES, check_callable, is_awaitable

__all__ = [
    "PullBufferReduceObj",
    "PullCallbackObj",
    "PullFilterObj",
    "PullFlatMapObj",
    "PullFlattenObj",
    "PullMapObj",
    "PullReduceObj",
    "is_flattenable",
    "iterate_flat",
]

T = TypeVar("T")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_ATOMS = (str, bytes, bytearray)


def is_flattenable(value: object) -> bool:
    """Whether ``flatten`` iterates ``value``: any (async) iterable but str and bytes."""
    kind = type(value)
    return (hasattr(kind, "__aiter__") or hasattr(kind, "__iter__")) and not isinstance(
        value, _ATOMS
    )


async def iterate_flat(value: Any) -> AsyncGenerator[Any, None]:
    """Yield the items of ``value`` one level deep (itself, if it is not flattenable)."""
    if type(value) not in PLAIN_TYPES and is_awaitable(value):
        value = await value
    if hasattr(type(value), "__aiter__"):
        async for item in value:
            yield item
    elif isinstance(value, Iterable) and not isinstance(value, _ATOMS):
        for item in value:
            yield item
    else:
        yield value


class PullMapObj(PullObj1To1Link[IN, OUT]):
    """Yield ``transform(item)`` for each item (``transform`` is mutable).

    Typed ``PullMapObj[IN, OUT]`` for a ``transform`` of ``IN`` returning ``OUT`` or an
    awaitable of ``OUT``."""

    # The overloads infer OUT: an async transform's is what it resolves to.
    @overload
    def __init__(
        self, source: AsyncIterable[IN], transform: Callable[[IN], Awaitable[OUT]]
    ) -> None: ...

    @overload
    def __init__(self, source: AsyncIterable[IN], transform: Callable[[IN], OUT]) -> None: ...

    def __init__(
        self, source: AsyncIterable[IN], transform: Callable[[IN], OUT | Awaitable[OUT]]
    ) -> None:
        super().__init__(source)
        check_callable("transform", transform)
        self.transform = transform

    async def pull_impl(self) -> AsyncGenerator[OUT, Any]:
        plain: type = int  # the last result type seen not to be awaitable
        async for item in pull_iter(self.source):
            value: Any = self.transform(item)
            if type(value) is not plain:
                if is_awaitable(value):
                    value = await value
                else:
                    plain = type(value)
            yield value


class PullFlatMapObj(PullObj1To1Link[IN, OUT]):
    """For each item, yield every item of the (async) iterable ``transform(item)``
    returns, before pulling the next input. A result that is not iterable (or is a
    ``str``/``bytes``) is yielded as one item."""

    def __init__(self, source: AsyncIterable[IN], transform: Callable[[IN], Any]) -> None:
        super().__init__(source)
        check_callable("transform", transform)
        self.transform = transform

    async def pull_impl(self) -> AsyncGenerator[OUT, Any]:
        async for item in pull_iter(self.source):
            async for value in iterate_flat(self.transform(item)):
                yield value


class PullFilterObj(PullObj1To1Link[T, T]):
    """Yield the items for which ``filter(item)`` is truthy (sync or async; mutable,
    a new predicate applies to the next item)."""

    def __init__(self, source: AsyncIterable[T], filter: Callable[[T], Any]) -> None:
        super().__init__(source)
        check_callable("filter", filter)
        self.filter = filter

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        plain: type = bool  # the last result type seen not to be awaitable
        async for item in pull_iter(self.source):
            keep = self.filter(item)
            if type(keep) is not plain:
                if is_awaitable(keep):
                    keep = await keep
                else:
                    plain = type(keep)
            if keep:
                yield item


_NO_INITIAL: Any = object()


class PullReduceObj(PullObj1To1Link[IN, OUT]):
    """A running reduce that yields every intermediate accumulator.

    ``reducer(accumulator, value)`` (the order of :func:`functools.reduce`, decision
    C16). Without ``accum``, the first item becomes the accumulator and is yielded as
    is, as :func:`itertools.accumulate` does. ``accum`` is public and mutable: it holds
    the current accumulator.
    """

    # The overloads infer OUT, the accumulator's type, from the reducer (an async
    # reducer's is what it resolves to). Without ``accum`` the first item is the first
    # accumulator, so IN should be an OUT.
    @overload
    def __init__(
        self,
        source: AsyncIterable[IN],
        reducer: Callable[[OUT, IN], Awaitable[OUT]],
        accum: OUT = ...,
    ) -> None: ...

    @overload
    def __init__(
        self, source: AsyncIterable[IN], reducer: Callable[[OUT, IN], OUT], accum: OUT = ...
    ) -> None: ...

    def __init__(
        self,
        source: AsyncIterable[IN],
        reducer: Callable[[OUT, IN], OUT | Awaitable[OUT]],
        accum: Any = _NO_INITIAL,
    ) -> None:
        super().__init__(source)
        check_callable("reducer", reducer)
        self.reducer = reducer
        self.accum = accum

    async def pull_impl(self) -> AsyncGenerator[OUT, Any]:
        plain: type = int  # the last result type seen not to be awaitable
        async for item in pull_iter(self.source):
            accum = self.accum
            value: Any
            if accum is _NO_INITIAL:
                value = item
            else:
                value = self.reducer(accum, item)
                if type(value) is not plain:
                    if is_awaitable(value):
                        value = await value
                    else:
                        plain = type(value)
            self.accum = value
            yield value


class PullBufferReduceObj(PullObj1To1Link[IN, OUT]):
    """Call ``reducer(item)`` for each item and yield whatever it yields: zero or more
    values. ``reducer`` is typically a generator function keeping state in a closure;
    any (async) iterable result works."""

    def __init__(self, source: AsyncIterable[IN], reducer: Callable[[IN], Any]) -> None:
        super().__init__(source)
        check_callable("reducer", reducer)
        self.reducer = reducer

    async def pull_impl(self) -> AsyncGenerator[OUT, Any]:
        async for item in pull_iter(self.source):
            async for value in iterate_flat(self.reducer(item)):
                yield value


class PullFlattenObj(PullObj1To1Link[Any, Any]):
    """Flatten one level: yield each element of items that are (async) iterables,
    except ``str``/``bytes``/``bytearray``; other items pass through (decision C11)."""

    async def pull_impl(self) -> AsyncGenerator[Any, Any]:
        async for item in pull_iter(self.source):
            if is_flattenable(item):
                async for value in iterate_flat(item):
                    yield value
            else:
                yield item


class PullCallbackObj(PullObj1To1Link[T, T]):
    """Call every callback with each item (awaiting async ones), then yield the item
    unchanged. Return values are ignored; ``callbacks`` is a mutable list."""

    def __init__(self, source: AsyncIterable[T], *callbacks: Callable[[T], Any]) -> None:
        super().__init__(source)
        for i, callback in enumerate(callbacks):
            check_callable(f"callbacks[{i}]", callback)
        self.callbacks: list[Callable[[T], Any]] = list(callbacks)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        async for item in pull_iter(self.source):
            for callback in self.callbacks:
                result = callback(item)
                if type(result) not in PLAIN_TYPES and is_awaitable(result):
                    await result
            yield item
