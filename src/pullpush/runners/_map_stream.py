"""What :func:`pullpush.map` returns, :class:`MapStream`, and what runs behind it,
``_MapRun``: the task source (chunks of the input, within the window), the
reassembly of the pieces the tasks end with (in input order or as they finish),
the errors (``errors="raise"`` or ``"return"``), and the progress report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import sys
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
from typing import Any, Literal, TypeVar

from .._util import check_int, check_seconds
from ..capacity import CapacitySource
from ..executors import ExecutorSpec
from ..executors._registry import check_executor_spec, make_executor
from ._envelope import EnvelopeType
from ._hierarchical import HierarchicalTaskPoolRunner
from ._map_batches import (
    BATCH_SECONDS,
    _Batch,
    _BatchSizer,
    _Chunk,
    _first_large,
    _large_batch_count,
)

__all__ = ["MapStream"]

R = TypeVar("R")

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL

Errors = Literal["raise", "return"]


class MapStream(AsyncIterator[R]):
    """What :func:`~pullpush.map` returns: iterate it (``async for``) for the results as they
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
                print(self._line(), end="", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._callback is None:
            print(self._line(), file=sys.stderr)

    def _line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"\rpullpush.map: {self.done}{of} items"


class _MapRun:
    """One run of a map: the task source, the reassembly of pieces, the errors."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any] | AsyncIterable[Any],
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
        self.sizer = _BatchSizer(batch_size)
        # Batching: plain functions only, and not with a per-item timeout.
        self.batching = timeout is None and not _is_async_function(fn) and batch_size != 1
        self._batch = _Batch(fn)
        # Task ids of the runner increase in the order this source hands tasks over,
        # from 0 (it rejects nothing: every task is callable): _chunks[i] is task i's.
        self._chunks: dict[int, _Chunk] = {}
        self._next_task = 0
        self._next_item = 0
        self._retry: deque[_Chunk] = deque()
        self._pending_next: asyncio.Future[Any] | None = None  # an async item on its way
        self._exhausted = False
        self._in_flight = 0  # tasks handed over whose end was not processed yet
        self._outstanding = 0  # tasks handed over whose piece was not yielded yet
        self._window = 64
        self._wake: asyncio.Future[None] | None = None
        # Ordered reassembly: pieces that ended early, by start index.
        self._done: dict[int, _Piece] = {}
        self._head = 0

    # -- the task source ---------------------------------------------------------------------

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
        if not self.batching:
            items = await self._take(1)
            if not items:
                return None
            self._next_item += 1
            return _Chunk(start, items, False)
        items = await self._take(self.sizer.size())
        if not items:
            return None
        large = None if self._small_only else _first_large(items)
        if large == 0:
            # A batch of large items, by bytes: a tuple, whose large items the process
            # executor sends out of band; the items after it back in front of the input.
            count = _large_batch_count(items)
            self._next_item += count
            if len(items) > count:
                self._push_back(items[count:])
            return _Chunk(start, tuple(items[:count]), True)
        if large is not None:  # the items from it on are the next chunk's
            self._push_back(items[large:])
            items = items[:large]
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
        self.sizer.learn(seconds / count, count)
        return _Piece(chunk.start, results)

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
                self.sizer.spread(self.total, workers)
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
