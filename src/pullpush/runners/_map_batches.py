"""The batches of :func:`pullpush.map`: which items go together, how many, and
:class:`_Batch`, the task function that runs a batch in a worker and times it.

The size of the next batch is aimed at :data:`BATCH_SECONDS` of work from the time
per item measured so far (:class:`_BatchSizer`). A batch that starts with a large item
(:func:`_first_large`) is a ``tuple`` of at most :data:`BATCH_BYTES` bytes of items
and :data:`MAX_LARGE_BATCH` items (:func:`_large_batch_count`), so that the process
executor sends each large item out of band; a batch of small items ends before the
first large one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

__all__ = ["BATCH_BYTES", "BATCH_SECONDS", "LARGE_ITEM", "MAX_BATCH", "MAX_LARGE_BATCH"]

BATCH_SECONDS = 0.005
"""The work one batch of tiny items aims at, in seconds (the time per item is measured
in the workers as the map goes)."""

LARGE_ITEM = 64 * 1024
"""Items of at least this many bytes (``str``, ``bytes``, ``bytearray``,
``memoryview``, or anything with an int ``nbytes``, such as a NumPy array) are
*large*: the size from which the process executor sends a value out of band (through
its payload arena). Large items go in batches of their own (a ``tuple``, whose items
the executor takes out of band, where it copies a list's into the pickle), of at most
:data:`BATCH_BYTES` bytes and :data:`MAX_LARGE_BATCH` items."""

BATCH_BYTES = 1 << 20
"""The bytes of items (large and small ones' ``len`` or ``nbytes``) one batch that
holds large items takes at most (at least one item, whatever its size): the per-task
cost is paid once per batch, while the work still spreads over the workers."""

MAX_LARGE_BATCH = 64
"""The most items in a batch that holds large items: the process executor takes the
large items of a tuple of up to 64 out of band."""

MAX_BATCH = 1 << 17
"""The most items in one batch."""

_GROWTH = 16  # a batch holds at most this many times the largest batch measured so far

_BUFFERS = frozenset({str, bytes, bytearray, memoryview})


# -- in the worker ---------------------------------------------------------------------------


class _Batch:
    """The task function of a batch: ``fn`` over a list of items, in a worker.

    Returns ``(results, seconds)``. When an item raises, returns instead a generator
    that yields the results before it (one INTERMEDIATE value), then raises the error:
    the parent learns where the batch stopped and gets the error with its traceback.
    One instance per map, so the process executor pickles ``fn`` once per worker.
    """

    __slots__ = ("__weakref__", "fn")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __repr__(self) -> str:
        return f"<pullpush.map batch of {getattr(self.fn, '__qualname__', self.fn)!r}>"

    def __call__(self, items: Sequence[Any]) -> Any:
        results: list[Any] = []
        start = time.perf_counter()
        try:
            # list.extend keeps what it appended when the iterator raises: the results
            # before the failed item (and it runs the loop in C, twice as fast).
            results.extend(map(self.fn, items))
        except Exception as error:
            return _stopped_at(results, error)
        return results, time.perf_counter() - start


def _stopped_at(results: list[Any], error: Exception) -> Generator[list[Any], None, None]:
    yield results
    raise error


# -- in the parent ---------------------------------------------------------------------------


class _Chunk:
    """Items ``start .. start + len(items)`` of the input, sent as one task (a list, a
    ``range`` when the input is one: it pickles in a few bytes, or a ``tuple`` when
    they are large: see :data:`LARGE_ITEM`)."""

    __slots__ = ("batched", "items", "start")

    def __init__(self, start: int, items: Sequence[Any], batched: bool) -> None:
        self.start = start
        self.items = items
        self.batched = batched


class _BatchSizer:
    """How many items the next batch takes: ``fixed`` (``batch_size=``), else aimed at
    :data:`BATCH_SECONDS` from the time per item measured so far, starting at one item,
    at most ``_GROWTH`` times the largest batch measured, the cap :meth:`spread` sets
    and :data:`MAX_BATCH`."""

    __slots__ = ("_largest_measured", "_per_item", "_spread_cap", "fixed")

    def __init__(self, fixed: int | None) -> None:
        self.fixed = fixed
        self._per_item: float | None = None
        self._largest_measured = 0
        self._spread_cap = MAX_BATCH

    def spread(self, total: int, workers: int) -> None:
        """Cap a batch at a quarter of each worker's share of ``total`` items, so the
        work spreads."""
        self._spread_cap = max(1, math.ceil(total / (4 * max(1, workers))))

    def size(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self._per_item is None:
            return 1
        size = int(BATCH_SECONDS / max(self._per_item, 1e-9))
        return max(1, min(size, _GROWTH * self._largest_measured, self._spread_cap, MAX_BATCH))

    def learn(self, per_item: float, count: int) -> None:
        """A batch of ``count`` items took ``per_item`` seconds an item."""
        if self._per_item is None:
            self._per_item = per_item
        else:  # weigh by items, so one noisy item does not undo a measured batch
            weight = min(1.0, count / max(self._largest_measured, 1))
            self._per_item += (per_item - self._per_item) * max(weight, 0.1)
        self._largest_measured = max(self._largest_measured, count)


def _first_large(items: Sequence[Any]) -> int | None:
    """The index of the first item of at least :data:`LARGE_ITEM` bytes, if any."""
    if (
        # (the types as a set first: three times faster than isdisjoint(map(...)))
        _BUFFERS.isdisjoint(set(map(type, items)))
        and not any(hasattr(item, "nbytes") for item in items[:1])
    ):
        return None
    for index, item in enumerate(items):
        if _is_large(item):
            return index
    return None


def _is_large(item: Any) -> bool:
    return _size_of(item) >= LARGE_ITEM


def _size_of(item: Any) -> int:
    """An item's bytes (``len`` or ``nbytes``), or 0 for an item that has none."""
    if type(item) in _BUFFERS:
        return item.nbytes if type(item) is memoryview else len(item)
    size = getattr(item, "nbytes", 0)
    return size if isinstance(size, int) else 0


def _large_batch_count(items: Sequence[Any]) -> int:
    """How many of ``items`` (the first of them large) go in one batch: those within
    :data:`BATCH_BYTES` in all, at least one, at most :data:`MAX_LARGE_BATCH`."""
    total = 0
    for count, item in enumerate(items[:MAX_LARGE_BATCH]):
        total += _size_of(item)
        if total > BATCH_BYTES and count:
            return count
    return min(len(items), MAX_LARGE_BATCH)
