"""The many-iterator engine under every pull combiner.

:class:`AsyncIteratorCombiner` holds at most **one pull in flight per source** at any
time, across all of its methods: a value that arrives after a ``race()`` returned is
kept for the next call, never lost, and a source is never pulled concurrently with
itself (Python async generators forbid that).

How a race works: each source with a pull in flight has one task stepping it. The
task's done-callback appends the source's slot to a ready queue and wakes the
consumer, so taking the next result costs O(1) whatever the number of sources (no
``asyncio.wait`` over every pending future per item).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from ._exceptions import PullPushError
from ._obj import aclose_quietly, pull_iter

__all__ = ["AnyFailedError", "AsyncIteratorCombiner"]

T = TypeVar("T")

_NO_FINAL: Any = object()


class AnyFailedError(PullPushError):
    """Every source of :meth:`AsyncIteratorCombiner.any` failed; see :attr:`errors`."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(f"all {len(errors)} sources failed: {errors!r}")
        self.errors = errors


async def _step(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class _Slot:
    """One source: its iterator and the task pulling from it, if any."""

    __slots__ = ("index", "iterator", "on_done", "pending", "source")

    def __init__(self, index: int, source: Any, on_ready: Callable[[_Slot], None]) -> None:
        self.index = index
        self.source = source
        self.iterator: AsyncIterator[Any] = pull_iter(source)
        # Invariant: pending is the one in-flight pull of this source, or None.
        self.pending: asyncio.Task[Any] | None = None
        self.on_done: Callable[[asyncio.Task[Any]], None] = lambda _task: on_ready(self)


class AsyncIteratorCombiner(Generic[T]):
    """Consume several async iterators concurrently.

    Args:
        *sources: async iterables (pull objects, async generators, ...).

    A source's *final value* is the argument of the ``StopAsyncIteration`` that ends
    it (async generators cannot return values, custom iterators can); with
    ``yield_final_values=True`` it is emitted when the source ends, if it has one.

    An error from a source removes that source and propagates to the caller (except
    in :meth:`any`). Pulls still in flight stay with the combiner between calls;
    :meth:`aclose` (or ``async with``) cancels them and closes every source. The
    generators cancel their pulls in flight when they are left early.
    """

    def __init__(self, *sources: AsyncIterable[T]) -> None:
        for i, source in enumerate(sources):
            if not hasattr(type(source), "__aiter__"):
                raise TypeError(
                    f"sources[{i}] must be an async iterable, got {type(source).__name__}"
                )
        self._sources = sources
        # Invariant: _active holds the slots of sources not yet exhausted, in order.
        self._active: list[_Slot] = [_Slot(i, s, self._on_ready) for i, s in enumerate(sources)]
        # Invariant: a slot is in _ready exactly when its pending task is done and
        # its outcome not yet taken.
        self._ready: deque[_Slot] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        in_flight = sum(s.pending is not None for s in self._active)
        return f"<AsyncIteratorCombiner size={self.size} in_flight={in_flight}>"

    @property
    def size(self) -> int:
        """The number of sources not yet exhausted."""
        return len(self._active)

    # -- plumbing ---------------------------------------------------------------------

    def _on_ready(self, slot: _Slot) -> None:
        self._ready.append(slot)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _start(self, slot: _Slot) -> None:
        if slot.pending is None:
            task = asyncio.ensure_future(_step(slot.iterator))
            task.add_done_callback(slot.on_done)
            slot.pending = task

    async def _next_ready(self) -> _Slot:
        ready = self._ready
        while not ready:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return ready.popleft()

    def _take(self, slot: _Slot) -> tuple[bool, Any]:
        """Consume a finished pull of ``slot``: ``(True, value)`` or ``(False, final)``.

        An exhausted source is removed and its final value returned (or
        ``_NO_FINAL``); a failed source is removed and its error raised.
        """
        task = slot.pending
        assert task is not None and task.done()
        slot.pending = None
        if task.cancelled():
            self._remove(slot)
            raise asyncio.CancelledError(f"the pull of source {slot.index} was cancelled")
        error = task.exception()
        if error is None:
            return True, task.result()
        self._remove(slot)
        if isinstance(error, StopAsyncIteration):
            return False, error.args[0] if error.args else _NO_FINAL
        raise error

    async def _pull(self, slot: _Slot) -> tuple[bool, Any]:
        """Pull one outcome from ``slot``, using its pull in flight if it has one."""
        task = slot.pending
        if task is not None:
            task.remove_done_callback(slot.on_done)
            if task.done():
                self._discard_ready(slot)
            else:
                await asyncio.wait((task,))
            return self._take(slot)
        try:
            return True, await slot.iterator.__anext__()
        except StopAsyncIteration as end:
            self._remove(slot)
            return False, end.args[0] if end.args else _NO_FINAL
        except BaseException:
            self._remove(slot)
            raise

    def _discard_ready(self, slot: _Slot) -> None:
        try:
            self._ready.remove(slot)
        except ValueError:
            pass

    def _remove(self, slot: _Slot) -> None:
        try:
            self._active.remove(slot)
        except ValueError:
            pass

    async def _cancel_pending(self, slots: list[_Slot] | None = None) -> None:
        """Cancel the pulls in flight (of ``slots``, default all) and wait for them."""
        tasks = []
        for slot in self._active if slots is None else slots:
            task = slot.pending
            if task is not None:
                task.remove_done_callback(slot.on_done)
                self._discard_ready(slot)
                slot.pending = None
                task.cancel()
                tasks.append(task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel every pull in flight and close every source that has ``aclose``."""
        await self._cancel_pending()
        self._active.clear()
        self._ready.clear()
        for source in self._sources:
            await aclose_quietly(source)

    async def __aenter__(self) -> AsyncIteratorCombiner[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- strategies -------------------------------------------------------------------

    async def race_generator(self, yield_final_values: bool = False) -> AsyncGenerator[T, None]:
        """Yield values in the order they arrive, from whichever source is first.

        Every source keeps one pull in flight; the winner is pulled again at once.
        Ends when every source is exhausted.
        """
        async for _, value in self.race_pairs(yield_final_values):
            yield value

    async def race_pairs(
        self, yield_final_values: bool = False
    ) -> AsyncGenerator[tuple[Any, T], None]:
        """Like :meth:`race_generator`, yielding ``(source, value)`` pairs."""
        completed = False
        for slot in self._active:
            self._start(slot)
        try:
            while self._active or self._ready:
                slot = await self._next_ready()
                ok, value = self._take(slot)
                if ok:
                    self._start(slot)
                    yield slot.source, value
                elif yield_final_values and value is not _NO_FINAL:
                    yield slot.source, value
            completed = True
        finally:
            if not completed:
                await self._cancel_pending()

    async def round_robin_generator(
        self, yield_final_values: bool = False
    ) -> AsyncGenerator[T, None]:
        """Yield one value per source in turn (0, 1, 2, 0, ...), dropping exhausted
        sources. Pulls are sequential: only the source whose turn it is is pulled."""
        async for _, value in self.round_robin_pairs(yield_final_values):
            yield value

    async def round_robin_pairs(
        self, yield_final_values: bool = False
    ) -> AsyncGenerator[tuple[Any, T], None]:
        """Like :meth:`round_robin_generator`, yielding ``(source, value)`` pairs."""
        position = 0
        while self._active:
            position %= len(self._active)
            slot = self._active[position]
            ok, value = await self._pull(slot)
            if ok:
                position += 1
                yield slot.source, value
            elif yield_final_values and value is not _NO_FINAL:
                yield slot.source, value

    async def race_robin_pairs(
        self, cutoff: AsyncIterable[Any] | None = None
    ) -> AsyncGenerator[tuple[Any, T] | None, None]:
        """Race in rounds: every live source delivers exactly one value per round,
        fastest first, before the next round starts (a fast source cannot starve a
        slow one).

        With ``cutoff``, each round also pulls the cutoff source once; if it yields
        before the round is complete, ``None`` is yielded to mark the cut and the
        next round starts. Pulls still in flight carry over to the next round, so
        nothing is lost. A cutoff pull still in flight when a round completes carries
        over too.
        """
        cut = _Slot(-1, cutoff, self._on_ready) if cutoff is not None else None
        completed = False
        try:
            while self._active:
                waiting = set(self._active)
                for slot in self._active:
                    self._start(slot)
                if cut is not None:
                    self._start(cut)
                while waiting:
                    slot = await self._next_ready()
                    if slot is cut:
                        ok, _ = self._take_cutoff(cut)
                        if ok:
                            yield None
                            break
                        cut = None  # the cutoff source ended: no more cutoffs
                        continue
                    waiting.discard(slot)
                    ok, value = self._take(slot)
                    if ok:
                        yield slot.source, value
            completed = True
        finally:
            if cut is not None and cut.pending is not None:
                await self._cancel_pending([cut])
            if not completed:
                await self._cancel_pending()

    def _take_cutoff(self, cut: _Slot) -> tuple[bool, Any]:
        task = cut.pending
        assert task is not None
        cut.pending = None
        error = None if task.cancelled() else task.exception()
        if error is None and not task.cancelled():
            return True, task.result()
        if isinstance(error, StopAsyncIteration):
            return False, None
        raise error or asyncio.CancelledError()

    async def all(self, yield_final_values: bool = False) -> list[T]:
        """Pull one value from every live source concurrently; return them in source
        order (a source that ends contributes its final value if requested, else
        nothing). Raises the first error, in source order, after all pulls settle."""
        slots = list(self._active)
        for slot in slots:
            self._start(slot)
        tasks = [slot.pending for slot in slots if slot.pending is not None]
        if tasks:
            await asyncio.wait(tasks)
        values: list[T] = []
        first_error: BaseException | None = None
        for slot in slots:
            task = slot.pending
            assert task is not None
            task.remove_done_callback(slot.on_done)
            self._discard_ready(slot)
            try:
                ok, value = self._take(slot)
            except BaseException as error:
                first_error = first_error or error
                continue
            if ok or (yield_final_values and value is not _NO_FINAL):
                values.append(value)
        if first_error is not None:
            raise first_error
        return values

    async def race(self, yield_final_values: bool = False, discard_round: bool = False) -> T:
        """Return the first value to arrive from any source.

        Exhausted sources are skipped (their final value wins if requested). Other
        pulls in flight stay for the next call unless ``discard_round`` is true, in
        which case they are cancelled and their values dropped.

        Raises:
            StopAsyncIteration: every source is exhausted.
        """
        return await self._first(yield_final_values, discard_round, tolerate_errors=False)

    async def any(self, yield_final_values: bool = False, discard_round: bool = False) -> T:
        """Like :meth:`race`, but a failing source is dropped instead of failing the
        call (``Promise.any``); :class:`AnyFailedError` if every source failed."""
        return await self._first(yield_final_values, discard_round, tolerate_errors=True)

    async def _first(self, finals: bool, discard_round: bool, *, tolerate_errors: bool) -> T:
        errors: list[BaseException] = []
        for slot in self._active:
            self._start(slot)
        try:
            while self._active or self._ready:
                slot = await self._next_ready()
                try:
                    ok, value = self._take(slot)
                except Exception as error:
                    if not tolerate_errors:
                        raise
                    errors.append(error)
                    continue
                if ok or (finals and value is not _NO_FINAL):
                    return value  # type: ignore[no-any-return]
        finally:
            if discard_round:
                await self._cancel_pending()
        if errors:
            raise AnyFailedError(errors)
        raise StopAsyncIteration
