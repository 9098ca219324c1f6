"""A parallel map in one line: :func:`map` (async) and :func:`map_sync` (blocking).

Both run ``fn`` over the items on an executor (worker processes by default) through a
:class:`HierarchicalTaskPoolRunner`, and batch tiny items automatically:

* **Batches.** Items of a plain function go to the workers in lists (one task each),
  run there by ``_Batch`` (in ``_map_batches``), which also times them. The next
  batch's size is aimed at :data:`BATCH_SECONDS` of work from the time per item
  measured so far (starting at one item, growing at most 16-fold per measured batch,
  and, when the number of items is known, at most a quarter of each worker's share,
  so the work spreads). Items that are large (a ``str``/``bytes``/buffer of at
  least :data:`LARGE_ITEM` bytes) go in batches of their own, of at most
  :data:`BATCH_BYTES` (1 MiB) and 64 items, each large item out of band (through the
  process executor's payload arena, never copied into the batch's pickle). All items
  of an ``async def`` function go one per task, and so does every item when
  ``timeout=`` is given (a timeout is a task's).
* **Errors.** An item that raises ends its batch: the batch returns the results
  before it as one INTERMEDIATE value, then raises the error (with the worker's
  traceback); the items after it are submitted again as a new batch (with
  ``errors="return"``), so every item runs exactly once. An error that is not an
  item's (a worker crash, a timeout, a result that cannot be pickled) stands for
  every item of its batch.
* **Order.** Every task ends in one *piece*: a run of consecutive items' results.
  ``ordered=True`` yields pieces in input order (holding those that finish early),
  ``ordered=False`` as they finish. At most ``window`` tasks are started and not yet
  yielded, so a slow consumer, or a slow item holding up the order, bounds memory.

The modules: this one holds the public functions; ``_map_stream`` the
:class:`MapStream` they return and the run behind it (the task source, the order,
the errors, the progress); ``_map_batches`` the batches (which items, how many, and
the task function that runs them in a worker); ``_map_sync`` the background thread
and event loop of :func:`map_sync`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar, overload

from ..capacity import CapacitySource
from ..executors import Executor, ExecutorSpec
from ._map_batches import BATCH_BYTES, BATCH_SECONDS, LARGE_ITEM
from ._map_stream import Errors, MapStream, _MapRun
from ._map_sync import _in_thread

__all__ = ["BATCH_BYTES", "BATCH_SECONDS", "LARGE_ITEM", "MapStream", "map", "map_sync"]

T = TypeVar("T")
R = TypeVar("R")


# -- the public functions ----------------------------------------------------------------


# The overloads type the results (first match wins): an ``async def`` fn's results
# are what it resolves to; ``errors="return"`` adds the exceptions yielded in place.


@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: ExecutorSpec = ...,
    workers: int | None = ...,
    capacity: CapacitySource | int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Literal["raise"] = ...,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> MapStream[R]: ...


@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: ExecutorSpec = ...,
    workers: int | None = ...,
    capacity: CapacitySource | int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Errors,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> MapStream[R | BaseException]: ...


@overload
def map(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: ExecutorSpec = ...,
    workers: int | None = ...,
    capacity: CapacitySource | int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Literal["raise"] = ...,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> MapStream[R]: ...


@overload
def map(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: ExecutorSpec = ...,
    workers: int | None = ...,
    capacity: CapacitySource | int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Errors,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> MapStream[R | BaseException]: ...


def map(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: ExecutorSpec = "process",
    workers: int | None = None,
    capacity: CapacitySource | int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    errors: Errors = "raise",
    progress: bool | Callable[[int, int | None], Any] = False,
    batch_size: int | None = None,
) -> MapStream[Any]:
    """Run ``fn`` on every item in parallel; yield the results (or await them all).

    ::

        async for square in pullpush.map(square, range(1_000_000), workers=4):
            ...
        squares = await pullpush.map(square, range(1_000_000))  # a list

    Args:
        fn: a function of one item (a plain function, or an ``async def`` one). With
            the process executor it travels by cloudpickle once per worker; define
            it at module level and run the map under ``if __name__ == "__main__":``.
        items: any iterable or async iterable, read lazily as tasks start.
        executor: ``"process"`` (default), ``"thread"``, ``"inline"``, ``"ray"``, or an
            :class:`Executor`. A name builds an executor that the map closes when it
            ends; an executor object is the caller's (started if needed, left open).
        workers: the pool size of the executor built from ``"process"`` or
            ``"thread"`` (default: the usable CPUs).
        capacity: tasks (batches) running at once, as an int or a
            :class:`CapacitySource` -- e.g. a child of a capacity shared with other
            runners. Default: the executor's own slots are the limit.
        ordered: yield results in input order (default) or as they finish.
        timeout: seconds each item may run; it then fails with
            :class:`TaskTimeoutError`. Items run one per task when it is set.
        errors: ``"raise"`` (default): the first failure (in input order when
            ``ordered``) is raised after the results before it, and the rest of the
            map is cancelled. ``"return"``: the exception is yielded in the item's
            place and the map goes on.
        progress: ``True`` shows a tqdm bar when tqdm is installed (else a line on
            stderr); a callable is called as ``progress(done, total)`` (``total`` is
            ``None`` for inputs without ``len()``).
        batch_size: items per task; default: adaptive, aiming at
            :data:`BATCH_SECONDS` of work per batch (``1`` turns batching off). A
            batch of large items also stops at :data:`BATCH_BYTES` and 64 items.

    Returns a :class:`MapStream`, an async iterator that can also be awaited for a
    list (typed ``MapStream[R]`` for an ``fn`` that returns ``R`` or an awaitable of
    ``R``, ``MapStream[R | BaseException]`` with ``errors="return"``). Leaving
    early (``break``, an exception) cancels the tasks in flight;
    ``contextlib.aclosing`` waits for that cleanup. An exception raised for an item
    keeps its type, carries the worker's traceback as ``__cause__``, and (Python
    3.11+) a note naming the item's index.

    Batching: items of a plain function go to the workers in lists whose size adapts
    to the time per item measured there (large items, of :data:`LARGE_ITEM` bytes and up,
    go in batches of at most :data:`BATCH_BYTES` bytes, each out of band), so a million
    tiny items cost about what ``Pool.map`` with its best ``chunksize`` does; see the
    module's notes for the details.
    """
    return MapStream(
        _MapRun(
            fn, items, executor, workers, capacity, ordered, timeout, errors, progress, batch_size
        )
    )


@overload
def map_sync(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: Literal["process", "thread", "inline"] = ...,
    workers: int | None = ...,
    capacity: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Literal["raise"] = ...,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> Iterator[R]: ...


@overload
def map_sync(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: Literal["process", "thread", "inline"] = ...,
    workers: int | None = ...,
    capacity: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Errors,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> Iterator[R | BaseException]: ...


@overload
def map_sync(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: Literal["process", "thread", "inline"] = ...,
    workers: int | None = ...,
    capacity: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Literal["raise"] = ...,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> Iterator[R]: ...


@overload
def map_sync(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: Literal["process", "thread", "inline"] = ...,
    workers: int | None = ...,
    capacity: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    errors: Errors,
    progress: bool | Callable[[int, int | None], Any] = ...,
    batch_size: int | None = ...,
) -> Iterator[R | BaseException]: ...


def map_sync(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    *,
    executor: Literal["process", "thread", "inline"] = "process",
    workers: int | None = None,
    capacity: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    errors: Errors = "raise",
    progress: bool | Callable[[int, int | None], Any] = False,
    batch_size: int | None = None,
) -> Iterator[Any]:
    """The blocking twin of :func:`map`, for code without an event loop::

        squares = list(pullpush.map_sync(square, range(1_000_000)))

    Returns an iterator over the results (same arguments and behaviour as
    :func:`map`; typed ``Iterator[R]``, or ``Iterator[R | BaseException]`` with
    ``errors="return"``). The map runs on an event loop of its own in a background thread
    (started at the first ``next()``), which keeps the workers busy while the caller
    handles results; ``items`` is read on that thread. Closing the iterator early
    (``break`` in a ``for``, ``.close()``) cancels what runs and waits for the
    executor to close.

    Because that loop is private, ``executor`` is a name only (an executor object
    belongs to the loop it started on) and ``capacity`` an int only; use
    :func:`map` inside your own loop to share executors or capacity. Calling it from
    a running event loop raises ``RuntimeError`` (it would block that loop).
    """
    if isinstance(executor, Executor) or executor not in ("process", "thread", "inline"):
        raise ValueError(
            "map_sync runs its own event loop, so executor must be 'process', 'thread' or "
            f"'inline' (an Executor object belongs to the loop it runs on), got {executor!r}; "
            "use pullpush.map in your loop to share one"
        )
    if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)):
        raise TypeError(
            f"map_sync takes capacity as an int (its loop is private), got "
            f"{type(capacity).__name__}; use pullpush.map to share a CapacitySource"
        )
    return _in_thread(
        _MapRun(
            fn, items, executor, workers, capacity, ordered, timeout, errors, progress, batch_size
        )
    )
