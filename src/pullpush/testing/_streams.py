"""Assertions about streams: their items, their error, and that they were closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from typing import Any

from ._leaks import settle

__all__ = ["TrackedSource", "assert_closed", "assert_items", "assert_raises", "collect"]


async def collect(stream: AsyncIterable[Any], limit: int | None = None) -> list[Any]:
    """Return the items of ``stream`` (at most ``limit``; leaving early closes it)."""
    items: list[Any] = []
    if limit == 0:
        return items
    async for item in stream:
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


async def assert_items(
    stream: AsyncIterable[Any], expected: Sequence[Any], *, ordered: bool = True
) -> list[Any]:
    """Assert that ``stream`` yields exactly ``expected``, then ends and is closed.

    With ``ordered=False`` the items are compared as multisets (for races).
    """
    items = await collect(stream)
    if ordered:
        assert items == list(expected), f"items {items!r} != expected {list(expected)!r}"
    else:
        assert sorted(items, key=repr) == sorted(expected, key=repr), (
            f"items {items!r} are not a permutation of {list(expected)!r}"
        )
    await settle()
    assert_closed(stream)
    return items


async def assert_raises(
    stream: AsyncIterable[Any],
    error: type[BaseException],
    *,
    items: Sequence[Any] | None = None,
    match: str | None = None,
) -> BaseException:
    """Assert that iterating ``stream`` raises ``error`` (after exactly ``items``,
    when given; with ``match`` in its message) and leaves the stream closed."""
    seen: list[Any] = []
    try:
        async for item in stream:
            seen.append(item)
    except error as raised:
        if items is not None:
            assert seen == list(items), f"items before the error {seen!r} != {list(items)!r}"
        if match is not None:
            assert match in str(raised), f"{match!r} not in {str(raised)!r}"
        await settle()
        assert_closed(stream)
        return raised
    raise AssertionError(f"expected {error.__name__}, the stream ended after {seen!r}")


def assert_closed(*objects: object) -> None:
    """Assert that every object is finished: a pull object ``done`` (or ``closed``),
    a push object ``done``, a :class:`TrackedSource` closed or exhausted."""
    for obj in objects:
        done = getattr(obj, "done", None)
        closed = getattr(obj, "closed", None)
        assert done is True or closed is True, f"{obj!r} was left open"


class TrackedSource(AsyncIterable[Any]):
    """An async iterable that records how it was used, for close-propagation tests.

    Args:
        items: what to yield.
        delay: seconds to sleep before each item (``0`` still yields to the loop
            when ``yield_to_loop`` is true).
        fail_at: index at which to raise ``error`` instead of yielding.
        error: the exception to raise at ``fail_at``.
        yield_to_loop: sleep(0) before each item even with no delay.

    Attributes:
        pulls: how many items were requested.
        closed: whether the iteration was closed (``aclose`` or ``finally`` ran).
        exhausted: whether every item was yielded.
    """

    def __init__(
        self,
        items: Iterable[Any],
        *,
        delay: float = 0.0,
        fail_at: int | None = None,
        error: BaseException | None = None,
        yield_to_loop: bool = False,
    ) -> None:
        self.items = list(items)
        self.delay = delay
        self.fail_at = fail_at
        self.error = error or RuntimeError("TrackedSource failure")
        self.yield_to_loop = yield_to_loop
        self.pulls = 0
        self.closed = False
        self.exhausted = False
        self._iterator: AsyncGenerator[Any, None] | None = None

    @property
    def done(self) -> bool:
        return self.closed or self.exhausted

    def __repr__(self) -> str:
        return f"<TrackedSource pulls={self.pulls} closed={self.closed} exhausted={self.exhausted}>"

    def __aiter__(self) -> AsyncGenerator[Any, None]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        self.closed = True

    async def _run(self) -> AsyncGenerator[Any, None]:
        try:
            for index, item in enumerate(self.items):
                self.pulls += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                elif self.yield_to_loop:
                    await asyncio.sleep(0)
                if index == self.fail_at:
                    raise self.error
                yield item
            self.exhausted = True
        finally:
            self.closed = True
