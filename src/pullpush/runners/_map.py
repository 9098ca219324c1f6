"""A parallel map in one line: :func:`map` (async) and :func:`map_sync` (blocking).

Both run ``fn`` over the items on an executor (worker processes by default) through a
:class:`HierarchicalTaskPoolRunner`, and batch tiny items automatically:

* **Batches.** Items of a plain function go to the workers in lists (one task each),
  run there by :class:`_Batch`, which also times them. The next batch's size is aimed
  at :data:`BATCH_SECONDS` of work from the time per item measured so far (starting
  at one item, growing at most 16-fold per measured batch, and, when the number of
  items is known, at most a quarter of each worker's share, so the work spreads).
  Items that are large (a ``str``/``bytes``/buffer of more than :data:`LARGE_ITEM`
  bytes) go one per task; so do all items of an ``async def`` function, and every
  item when ``timeout=`` is given (a timeout is a task's).
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
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import itertools
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, Literal, TypeVar, overload

from .._util import check_int, check_seconds
from ..capacity import CapacitySource
from ..executors import Executor, ExecutorSpec
from ..executors._registry import check_executor_spec, make_executor
from ._envelope import EnvelopeType
from ._hierarchical import HierarchicalTaskPoolRunner

__all__ = ["BATCH_SECONDS", "LARGE_ITEM", "MapStream", "map", "map_sync"]

T = TypeVar("T")
R = TypeVar("R")

BATCH_SECONDS = 0.005
"""The work one batch of tiny items aims at, in seconds (the time per item is measured
in the workers as the map goes)."""

LARGE_ITEM = 64 * 1024
"""Items larger than this many bytes (``str``, ``bytes``, ``bytearray``,
``memoryview``, or anything with an int ``nbytes``, such as a NumPy array) go one per
task, never in a batch."""

MAX_BATCH = 1 << 17
"""The most items in one batch."""

_GROWTH = 16  # a batch holds at most this many times the largest batch measured so far

_builtin_map = builtins.map  # this module's ``map`` is the parallel one

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL
_BUFFERS = frozenset({str, bytes, bytearray, memoryview})

Errors = Literal["raise", "return"]


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
            results.extend(_builtin_map(self.fn, items))
        except Exception as error:
            return _stopped_at(results, error)
        return results, time.perf_counter() - start


def _stopped_at(results: list[Any], error: Exception) -> Generator[list[Any], None, None]:
    yield results
    raise error


# -- in the parent ---------------------------------------------------------------------------


class _Chunk:
    """Items ``start .. start + len(items)`` of the input, sent as one task (a list, or
    a ``range`` when the input is one: it pickles in a few bytes)."""

    __slots__ = ("batched", "items", "start")

    def __init__(self, start: int, items: Sequence[Any], batched: bool) -> None:
        self.start = start
        self.items = items
        self.batched = batched


class _Piece:
    """What one task ended with: the results of consecutive items from ``start``
    (exceptions in place with ``errors="return"``), and the error to raise after
    them (``errors="raise"``)."""

    __slots__ = ("error", "results", "start")

    def __init__(self, start: int, results: list[Any], error: BaseException | None = None):
        self.start = start
        self.results = results
        self.error = error

    @property
    def end(self) -> int:
        """The index after the last item this piece covers."""
        return self.start + len(self.results) + (self.error is not None)


def _is_large(item: Any) -> bool:
    if type(item) in _BUFFERS:
        size = item.nbytes if type(item) is memoryview else len(item)
    else:
        size = getattr(item, "nbytes", 0)
    return isinstance(size, int) and size > LARGE_ITEM


class _Progress:
    """``progress=True``: a tqdm bar when tqdm is installed, else a line on stderr at
    most twice a second; a callable gets ``(done, total)`` after each piece."""

    def __init__(self, progress: bool | Callable[[int, int | None], Any], total: int | None):
        self.total = total
        self.done = 0
        self._bar: Any = None
        self._callback: Callable[[int, int | None], Any] | None = None
        self._last = 0.0
        if callable(progress):
            self._callback = progress
        elif progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, unit="item", desc="pullpush.map")

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._callback is not None:
            self._callback(self.done, self.total)
        else:
            now = time.monotonic()
            if now - self._last >= 0.5:
                self._last = now
                of = f"/{self.total}" if self.total is not None else ""
                print(f"\rpullpush.map: {self.done}{of} items", end="", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._callback is None:
            of = f"/{self.total}" if self.total is not None else ""
            print(f"\rpullpush.map: {self.done}{of} items", file=sys.stderr)


class _MapRun:
    """One run of a map: the task source, the reassembly of pieces, the errors."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        executor: ExecutorSpec,
        workers: int | None,
        capacity: CapacitySource | int | None,
        ordered: bool,
        timeout: float | None,
        errors: Errors,
        progress: bool | Callable[[int, int | None], Any],
        batch_size: int | None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if hasattr(type(items), "__aiter__"):
            self._async_items: AsyncIterator[Any] | None = aiter(items)  # type: ignore[arg-type]
            self._sync_items: Iterator[Any] | None = None
        elif isinstance(items, Iterable) and not isinstance(items, (str, bytes)):
            self._async_items = None
            self._sync_items = iter(items)
        else:
            raise TypeError(f"items must be an iterable or async iterable, got {type(items)}")
        # A range, list or tuple input is sliced (a range into ranges, never
        # materialized in this process; its ints are never large items). _next_item
        # is where the next slice starts, so nothing taken is ever pushed back.
        self._sliced: Sequence[Any] | None = (
            items if type(items) in (range, list, tuple) else None  # type: ignore[assignment]
        )
        self._small_only = type(items) is range
        self.total: int | None = None
        with contextlib.suppress(TypeError):
            self.total = len(items)  # type: ignore[arg-type]
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool, got {type(ordered).__name__}")
        if isinstance(capacity, int) and not isinstance(capacity, bool):
            capacity = CapacitySource(check_int("capacity", capacity, minimum=1))
        elif capacity is not None and not isinstance(capacity, CapacitySource):
            raise TypeError(
                f"capacity must be an int or a CapacitySource, got {type(capacity).__name__}"
            )
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be a bool or a callable, got {type(progress)}")
        self.timeout = check_seconds("timeout", timeout, allow_none=True, positive=True)
        check_executor_spec(executor, workers)  # built when the run starts
        self.fn = fn
        self.executor_spec = executor
        self.workers = workers
        self.capacity = capacity
        self.ordered = ordered
        self.errors = errors
        self.progress = progress
        self.fixed_size = batch_size
        # Batching: plain functions only, and not with a per-item timeout.
        self.batching = timeout is None and not _is_async_function(fn) and batch_size != 1
        self._batch = _Batch(fn)
        # Task ids of the runner increase in the order this source hands tasks over,
        # from 0 (it rejects nothing: every task is callable): _chunks[i] is task i's.
        self._chunks: dict[int, _Chunk] = {}
        self._next_task = 0
        self._next_item = 0
        self._retry: deque[_Chunk] = deque()
        self._held_item: Any = _NOTHING  # a large item that ended the batch before it
        self._pending_next: asyncio.Future[Any] | None = None  # an async item on its way
        self._exhausted = False
        self._in_flight = 0  # tasks handed over whose end was not processed yet
        self._outstanding = 0  # tasks handed over whose piece was not yielded yet
        self._window = 64
        self._wake: asyncio.Future[None] | None = None
        # Batch sizing.
        self._per_item: float | None = None
        self._largest_measured = 0
        self._spread_cap = MAX_BATCH
        # Ordered reassembly: pieces that ended early, by start index.
        self._done: dict[int, _Piece] = {}
        self._head = 0

    # -- the task source ---------------------------------------------------------------------

    def _size(self) -> int:
        if self.fixed_size is not None:
            return self.fixed_size
        if self._per_item is None:
            return 1
        size = int(BATCH_SECONDS / max(self._per_item, 1e-9))
        return max(1, min(size, _GROWTH * self._largest_measured, self._spread_cap, MAX_BATCH))

    async def tasks(self) -> AsyncGenerator[Callable[[], Any], None]:
        """The runner's source: a task per chunk, within the window; chunks to run
        again first; it ends once the input is exhausted and nothing may come back."""
        while True:
            if self._retry:
                yield self._issue(self._retry.popleft())
                continue
            if self._exhausted:
                if self.errors == "raise" or self._in_flight == 0:
                    return
                await self._sleep()
                continue
            if self._outstanding >= self._window:
                await self._sleep()
                continue
            chunk = await self._next_chunk()
            if chunk is None:
                self._exhausted = True
                continue
            yield self._issue(chunk)

    async def _sleep(self) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    def _wake_source(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _issue(self, chunk: _Chunk) -> Callable[[], Any]:
        self._chunks[self._next_task] = chunk
        self._next_task += 1
        self._in_flight += 1
        self._outstanding += 1
        if chunk.batched:
            return functools.partial(self._batch, chunk.items)
        return functools.partial(self.fn, chunk.items[0])

    async def _next_chunk(self) -> _Chunk | None:
        start = self._next_item
        if self._held_item is not _NOTHING:
            item, self._held_item = self._held_item, _NOTHING
            self._next_item += 1
            return _Chunk(start, [item], False)
        if not self.batching:
            items = await self._take(1)
            if not items:
                return None
            self._next_item += 1
            return _Chunk(start, items, False)
        items = await self._take(self._size())
        if not items:
            return None
        if not self._small_only and (
            # (the types as a set first: three times faster than isdisjoint(map(...)))
            not _BUFFERS.isdisjoint(set(_builtin_map(type, items)))
            or any(hasattr(item, "nbytes") for item in items[:1])
        ):
            for index, item in enumerate(items):
                if _is_large(item):
                    if index == 0:
                        self._next_item += 1
                        if len(items) > 1:
                            self._push_back(items[1:])
                        return _Chunk(start, [item], False)
                    self._push_back(items[index:])
                    items = items[:index]
                    break
        self._next_item += len(items)
        return _Chunk(start, items, True)

    def _push_back(self, items: Sequence[Any]) -> None:
        """Put items taken too early back in front of the input."""
        if self._sliced is not None:
            return  # the next slice starts at _next_item, before them
        if self._sync_items is not None:
            self._sync_items = itertools.chain(items, self._sync_items)
        else:
            assert self._async_items is not None
            self._async_items = _prepend(items, self._async_items, self._pending_next)
            self._pending_next = None

    async def _take(self, count: int) -> Sequence[Any]:
        if self._sliced is not None:
            return self._sliced[self._next_item : self._next_item + count]
        if self._sync_items is not None:
            return list(itertools.islice(self._sync_items, count))
        # An async input: wait for the first item, then take what comes within
        # BATCH_SECONDS (an item still on its way is the next batch's first).
        source = self._async_items
        assert source is not None
        items: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BATCH_SECONDS
        while len(items) < count:
            pending = self._pending_next
            if pending is None:
                pending = asyncio.ensure_future(_anext(source))
            if items and not pending.done():
                self._pending_next = pending
                done, _ = await asyncio.wait({pending}, timeout=deadline - loop.time())
                if not done:
                    break
            self._pending_next = None
            item = await pending
            if item is _NOTHING:
                break
            items.append(item)
        return items

    async def aclose_input(self) -> None:
        pending, self._pending_next = self._pending_next, None
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        close = getattr(self._async_items, "aclose", None)
        if close is not None:
            await close()

    # -- the envelopes ---------------------------------------------------------------------------

    def _ended(self, task_id: int) -> _Chunk:
        chunk = self._chunks.pop(task_id)
        self._in_flight -= 1
        self._wake_source()
        return chunk

    def _final(self, task_id: int, value: Any) -> _Piece:
        chunk = self._ended(task_id)
        if not chunk.batched:
            return _Piece(chunk.start, [value])
        results, seconds = value
        count = len(chunk.items)
        self._learn(seconds / count, count)
        return _Piece(chunk.start, results)

    def _learn(self, per_item: float, count: int) -> None:
        if self._per_item is None:
            self._per_item = per_item
        else:  # weigh by items, so one noisy item does not undo a measured batch
            weight = min(1.0, count / max(self._largest_measured, 1))
            self._per_item += (per_item - self._per_item) * max(weight, 0.1)
        self._largest_measured = max(self._largest_measured, count)

    def _error(self, task_id: int, error: BaseException, partial: list[Any] | None) -> _Piece:
        chunk = self._ended(task_id)
        if partial is not None:  # an item's error: the results before it, then the error
            failed = len(partial)
            _note(error, chunk.start + failed)
            rest = chunk.items[failed + 1 :]
            if rest and self.errors == "return":
                self._retry.append(_Chunk(chunk.start + failed + 1, rest, True))
        else:  # the whole task's error (a crash, a timeout...): every item's
            failed = 0
            _note(error, chunk.start, len(chunk.items))
            if self.errors == "return":
                return _Piece(chunk.start, [error] * len(chunk.items))
        if self.errors == "return":
            return _Piece(chunk.start, [*partial, error] if partial is not None else [error])
        return _Piece(chunk.start, list(partial or ()), error)

    def _ready(self, piece: _Piece) -> list[_Piece]:
        """The pieces to yield now that ``piece`` ended, in order."""
        if not self.ordered:
            return [piece]
        if piece.start != self._head:
            self._done[piece.start] = piece
            return []
        ready = [piece]
        self._head = piece.end
        done = self._done
        while self._head in done:
            nxt = done.pop(self._head)
            ready.append(nxt)
            self._head = nxt.end
        return ready

    def _yielded(self) -> None:
        self._outstanding -= 1
        if self._outstanding < self._window:
            self._wake_source()

    async def pieces(self) -> AsyncGenerator[list[Any], None]:
        """Run the map; yield the results in lists (one per piece), raising the first
        error with ``errors="raise"`` after the results before it."""
        executor, owned = make_executor(self.executor_spec, self.workers)
        progress = _Progress(self.progress, self.total) if self.progress else None
        try:
            await executor.start()
            slots = executor.capacity
            size = slots.limit if slots is not None else 16
            self._window = max(64, 4 * size)
            capacity = self.capacity or CapacitySource(self._window)
            workers = getattr(executor, "max_workers", 1)
            if self.total is not None:
                self._spread_cap = max(1, math.ceil(self.total / (4 * max(1, workers))))
            tasks = self.tasks()
            runner = HierarchicalTaskPoolRunner(
                "map", tasks, capacity, executor=executor, timeout=self.timeout
            )
            partials: dict[int, list[Any]] = {}
            stream = runner.run_tasks()
            try:
                async for envelope in stream:
                    kind = envelope.type
                    task_id = envelope.task_id
                    if kind is _FINAL:
                        piece = self._final(task_id, envelope.value)
                    elif kind is _INTERMEDIATE:
                        # The results before a batch's failed item (a single item's
                        # values, from an fn returning a generator, are not results).
                        if self._chunks[task_id].batched:
                            partials[task_id] = envelope.value
                        continue
                    else:
                        assert envelope.error is not None
                        piece = self._error(task_id, envelope.error, partials.pop(task_id, None))
                    for ready in self._ready(piece):
                        self._yielded()
                        if ready.results:
                            yield ready.results
                        if progress is not None:
                            progress.update(ready.end - ready.start)
                        if ready.error is not None:
                            raise ready.error
            finally:
                await stream.aclose()
                await tasks.aclose()
        finally:
            try:
                await self.aclose_input()
            finally:
                if progress is not None:
                    progress.close()
                if owned:
                    await executor.aclose()


_NOTHING: Any = object()


async def _anext(source: AsyncIterator[Any]) -> Any:
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return _NOTHING


async def _prepend(
    items: Sequence[Any], rest: AsyncIterator[Any], pending: Awaitable[Any] | None
) -> AsyncGenerator[Any, None]:
    for item in items:
        yield item
    if pending is not None:
        item = await pending
        if item is _NOTHING:
            return
        yield item
    async for item in _iterate(rest):
        yield item


async def _iterate(source: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    while True:
        item = await _anext(source)
        if item is _NOTHING:
            return
        yield item


def _note(error: BaseException, index: int, count: int = 1) -> None:
    """Say which item(s) of the input raised (Python 3.11+ shows notes in tracebacks)."""
    add_note = getattr(error, "add_note", None)
    if add_note is None:
        return
    where = f"item {index}" if count == 1 else f"items {index} to {index + count - 1}"
    with contextlib.suppress(Exception):
        add_note(f"pullpush.map: raised for {where} of the input")


def _is_async_function(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object's async __call__
    )


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
            :data:`BATCH_SECONDS` of work per batch (``1`` turns batching off).

    Returns a :class:`MapStream`, an async iterator that can also be awaited for a
    list (typed ``MapStream[R]`` for an ``fn`` that returns ``R`` or an awaitable of
    ``R``, ``MapStream[R | BaseException]`` with ``errors="return"``). Leaving
    early (``break``, an exception) cancels the tasks in flight;
    ``contextlib.aclosing`` waits for that cleanup. An exception raised for an item
    keeps its type, carries the worker's traceback as ``__cause__``, and (Python
    3.11+) a note naming the item's index.

    Batching: items of a plain function go to the workers in lists whose size adapts
    to the time per item measured there (large items, over :data:`LARGE_ITEM` bytes,
    go one per task), so a million tiny items cost about what ``Pool.map`` with its
    best ``chunksize`` does; see the module's notes for the details.
    """
    run = _MapRun(
        fn,
        items,
        executor=executor,
        workers=workers,
        capacity=capacity,
        ordered=ordered,
        timeout=timeout,
        errors=errors,
        progress=progress,
        batch_size=batch_size,
    )
    return MapStream(run)


class MapStream(AsyncIterator[R]):
    """What :func:`map` returns: iterate it (``async for``) for the results as they
    come, or await it for all of them in a list (``await pullpush.map(f, items)``,
    about 80 ns an item cheaper than collecting them with ``async for``).

    Nothing runs before it is iterated or awaited, and it runs once. ``aclose()``
    cancels what runs and waits for it (``contextlib.aclosing`` calls it).
    """

    __slots__ = ("_results", "_run")

    def __init__(self, run: _MapRun) -> None:
        self._run: _MapRun | None = run
        self._results: AsyncGenerator[R, None] | None = None

    def __repr__(self) -> str:
        run = self._run
        what = f" of {getattr(run.fn, '__qualname__', run.fn)!r}" if run is not None else ""
        return f"<pullpush.MapStream{what}>"

    def _take(self) -> _MapRun:
        run, self._run = self._run, None
        if run is None:
            raise RuntimeError("a pullpush.map runs once; call pullpush.map again")
        return run

    def __aiter__(self) -> AsyncGenerator[R, None]:
        # The generator itself, so ``async for`` pays no call of ours per result.
        if self._results is None:
            self._results = _flatten(self._take().pieces())
        return self._results

    async def __anext__(self) -> R:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """Stop the map (if it runs) and wait until its tasks and executor are done."""
        self._run = None
        if self._results is not None:
            await self._results.aclose()

    def __await__(self) -> Generator[Any, None, list[R]]:
        return self._collect().__await__()

    async def _collect(self) -> list[R]:
        results: list[R] = []
        pieces = self._take().pieces()
        try:
            async for piece in pieces:
                results.extend(piece)
        finally:
            await pieces.aclose()
        return results


async def _flatten(pieces: AsyncGenerator[list[Any], None]) -> AsyncGenerator[Any, None]:
    try:
        async for piece in pieces:
            for result in piece:
                yield result
    finally:
        await pieces.aclose()


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
    run = _MapRun(
        fn,
        items,
        executor=executor,
        workers=workers,
        capacity=capacity,
        ordered=ordered,
        timeout=timeout,
        errors=errors,
        progress=progress,
        batch_size=batch_size,
    )
    return _in_thread(run)


_AHEAD = 8  # pieces the background loop may have ready before the caller takes them
_PIECE, _RAISED, _END = 0, 1, 2


def _in_thread(run: _MapRun) -> Generator[Any, None, None]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("pullpush.map_sync would block the running event loop; use pullpush.map")
    handoff: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    state = _Pump(run, handoff)
    thread = threading.Thread(target=state.main, name="pullpush-map", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = handoff.get()
            if kind == _PIECE:
                state.took()
                yield from payload
            elif kind == _RAISED:
                raise payload
            else:
                return
    finally:
        state.stop()
        thread.join()


class _Pump:
    """The background thread of :func:`map_sync`: runs the map on its own loop and
    hands the pieces over, at most ``_AHEAD`` ahead of the caller."""

    def __init__(self, run: _MapRun, handoff: queue.SimpleQueue[tuple[int, Any]]) -> None:
        self.run = run
        self.handoff = handoff
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.ahead = 0
        self.room: asyncio.Future[None] | None = None
        self.lock = threading.Lock()
        self.stopped = False

    def main(self) -> None:
        try:
            self._main()
        except BaseException as error:  # the caller waits for a word from this thread
            self.handoff.put((_RAISED, error))

    def _main(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        try:
            with self.lock:
                if self.stopped:
                    return
                self.loop = loop
                self.main_task = loop.create_task(self.pump())
            loop.run_until_complete(asyncio.gather(self.main_task, return_exceptions=True))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def pump(self) -> None:
        pieces = self.run.pieces()
        try:
            async for piece in pieces:
                self.handoff.put((_PIECE, piece))
                self.ahead += 1
                while self.ahead >= _AHEAD:
                    self.room = asyncio.get_running_loop().create_future()
                    await self.room
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # handed to the caller's thread
            self.handoff.put((_RAISED, error))
            return
        finally:
            await pieces.aclose()
        self.handoff.put((_END, None))

    def _took(self) -> None:
        self.ahead -= 1
        if self.room is not None and not self.room.done():
            self.room.set_result(None)

    def took(self) -> None:
        """The caller took a piece (called on its thread)."""
        with self.lock:
            if self.loop is not None and not self.stopped:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self.loop.call_soon_threadsafe(self._took)

    def stop(self) -> None:
        """Cancel the map unless it ended (called on the caller's thread)."""
        with self.lock:
            self.stopped = True
            if self.loop is not None and self.main_task is not None:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self.loop.call_soon_threadsafe(self.main_task.cancel)
