"""One-to-one pull operators that select or reorder items: dedupe and in-order."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, MutableMapping
from typing import Any, TypeVar

from .._obj import PullObj1To1Link, pull_iter
from .._util import check_int, make_selector

__all__ = ["PullDedupeObj", "PullInOrderObj"]

T = TypeVar("T")


class PullDedupeObj(PullObj1To1Link[T, T]):
    """Drop items whose key was seen before.

    Args:
        source: the upstream.
        obj2id: the key of an item: a callable, a key/attribute name, or ``None`` for
            the item itself.
        cache: the set of keys seen so far (mutable; pre-seed it, or ``clear()`` it to
            forget).
        consecutive: compare only with the previous item's key instead of every key
            seen (decision C12); ``cache`` is then unused. Fixed at construction.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        obj2id: str | Callable[[T], Any] | None = None,
        cache: set[Any] | None = None,
        *,
        consecutive: bool = False,
    ) -> None:
        super().__init__(source)
        self.obj2id = obj2id
        self.cache: set[Any] = set() if cache is None else cache
        self._consecutive = consecutive

    @property
    def consecutive(self) -> bool:
        """Whether only adjacent repeats are dropped (fixed at construction)."""
        return self._consecutive

    @property
    def obj2id(self) -> str | Callable[[T], Any] | None:
        """The key selector (mutable)."""
        return self._obj2id

    @obj2id.setter
    def obj2id(self, value: str | Callable[[T], Any] | None) -> None:
        # Invariant: _key is None exactly when items are their own keys.
        self._key = None if value is None else make_selector(value, "obj2id")
        self._obj2id = value

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        if self._consecutive:
            previous: Any = _NOTHING
            async for item in pull_iter(self.source):
                key_of = self._key
                key = item if key_of is None else key_of(item)
                if key != previous:
                    previous = key
                    yield item
            return
        async for item in pull_iter(self.source):
            key_of = self._key
            key = item if key_of is None else key_of(item)
            cache = self.cache
            if key not in cache:
                cache.add(key)
                yield item


_NOTHING: Any = object()


class PullInOrderObj(PullObj1To1Link[T, T]):
    """Re-sequence items by an integer index, holding early ones until their turn.

    Args:
        source: the upstream.
        obj2index: the index of an item: a callable or a key/attribute name.
        start: the first index expected (mutable; advances as items are yielded).
        cache: the held items by index (mutable).
        strict: what the end of the stream does with items still held behind a gap:
            ``False`` (default) yields them in index order, losing nothing; ``True``
            raises ``ValueError`` naming the first missing index.

    Raises:
        ValueError: an index repeats, or is below the next expected index.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        obj2index: str | Callable[[T], int],
        start: int = 0,
        cache: MutableMapping[int, T] | None = None,
        *,
        strict: bool = False,
    ) -> None:
        super().__init__(source)
        if obj2index is None:
            raise TypeError("obj2index must be a callable or a key/attribute name, got None")
        self._index = make_selector(obj2index, "obj2index")
        self.start = check_int("start", start, minimum=-(2**63))
        self.cache: MutableMapping[int, T] = {} if cache is None else cache
        self.strict = strict

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        cache = self.cache
        async for item in pull_iter(self.source):
            index = self._index(item)
            if index < self.start or index in cache:
                raise ValueError(f"PullInOrderObj: index {index!r} was already seen")
            if index != self.start:
                cache[index] = item
                continue
            self.start += 1
            yield item
            while self.start in cache:
                ready = cache.pop(self.start)
                self.start += 1
                yield ready
        if cache:
            if self.strict:
                raise ValueError(
                    f"PullInOrderObj: index {self.start} never arrived; "
                    f"{len(cache)} item(s) held behind it"
                )
            for index in sorted(cache):
                ready = cache.pop(index)
                self.start = index + 1
                yield ready
