"""The many-iterator engine under every pull combiner.

Each source of an :class:`AsyncIteratorCombiner` that has to be pulled concurrently
with the others gets one long-lived **pump** task. A pump pulls its source one item
at a time (a source is never pulled concurrently with itself, which async
generators forbid) and appends each *outcome* (a value, the end, or an error) to
its slot and to the combiner's arrival queue::

    source 0 --pump--> slot 0 outcomes --+
    source 1 --pump--> slot 1 outcomes --+--> ready (arrival order) --> race / any
    source 2 --pump--> slot 2 outcomes --+                          --> all / round robin

Read-ahead: a pump parks while its slot holds more than ``read_ahead`` outcomes the
consumer has not taken; taking one wakes it. ``read_ahead=0`` is FireFoundry's
strict behaviour (a source is pulled again only once its previous value was taken).
The default of 8 bounds memory just the same but lets a source that has items ready
hand over several per task switch, which makes a race as fast as an
``asyncio.Queue`` merge (``bench/operators.py``). Round-robin and concatenation do
not race and pull strictly on demand.

Nothing is lost between calls: outcomes that arrive after ``race()`` returned wait
for the next call. Leaving a generator early, or :meth:`~AsyncIteratorCombiner.aclose`,
cancels the pumps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from ._exceptions import PullPushError
from ._obj import PullObj, aclose_quietly, pull_iter
from ._util import check_int

__all__ = ["AnyFailedError", "AsyncIteratorCombiner"]

T = TypeVar("T")
R = TypeVar("R")

_NO_FINAL: Any = object()


def _value_only(index: int, value: T) -> T:
    return value


def _index_and_value(index: int, value: T) -> tuple[int, T]:
    return index, value


# Outcome kinds.
_VALUE, _END, _ERROR = 0, 1, 2


class AnyFailedError(PullPushError):
    """Every source of :meth:`AsyncIteratorCombiner.any` failed; see :attr:`errors`."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(f"all {len(errors)} sources failed: {errors!r}")
        self.errors = errors


class _Slot:
    """One source: its iterator, its pump and how many of its outcomes wait."""

    __slots__ = (
        "drop_next",
        "ended",
        "index",
        "iterator",
        "permit",
        "pulling",
        "pump",
        "read_ahead",
        "waiting",
    )

    def __init__(self, index: int, source: AsyncIterable[Any], read_ahead: int) -> None:
        self.index = index
        self.iterator: AsyncIterator[Any] = pull_iter(source)
        self.read_ahead = read_ahead
        # Invariant: waiting counts this slot's outcomes in the combiner's ready queue.
        self.waiting = 0
        self.pump: asyncio.Task[None] | None = None
        # Invariant: permit is the future the pump is parked on (waiting for room).
        self.permit: asyncio.Future[None] | None = None
        # Invariant: ended once the pump delivered an end or an error outcome.
        self.ended = False
        # Invariant: pulling while the pump awaits the source (cancelling it then
        # breaks the source, as cancelling any await inside a generator does).
        self.pulling = False
        # Set by race(discard_round=True): drop the value of the pull in flight.
        self.drop_next = False


# An outcome: (slot, kind, value); kind is _VALUE, _END (value: the final value or
# _NO_FINAL) or _ERROR (value: the exception).
_Outcome = tuple[_Slot, int, Any]


class AsyncIteratorCombiner(Generic[T]):
    """Consume several async iterators concurrently.

    Args:
        *sources: async iterables (pull objects, async generators, ...); each
            object at most once.
        read_ahead: values each source may have waiting for the consumer while its
            pump goes on pulling (see the module docs); ``0`` is FireFoundry's strict
            behaviour.

    A source's *final value* is the argument of the ``StopAsyncIteration`` that ends
    it (async generators cannot return values, custom iterators can); with
    ``yield_final_values=True`` it is emitted when the source ends, if it has one.

    An error from a source removes that source and propagates to the caller (except
    in :meth:`any`). :meth:`aclose` (or ``async with``) cancels the pumps and closes
    every source.
    """

    def __init__(self, *sources: AsyncIterable[T], read_ahead: int = 8) -> None:
        check_int("read_ahead", read_ahead, minimum=0)
        seen: set[int] = set()
        for i, source in enumerate(sources):
            if not hasattr(type(source), "__aiter__"):
                raise TypeError(
                    f"sources[{i}] must be an async iterable, got {type(source).__name__}"
                )
            if id(source) in seen:
                raise ValueError(f"sources[{i}] appears twice; each source may be given once")
            seen.add(id(source))
        self._sources = sources
        self._read_ahead = read_ahead
        # Invariant: _active holds the slots of sources whose end/error outcome has
        # not been taken yet, in source order.
        self._active: list[_Slot] = [_Slot(i, s, read_ahead) for i, s in enumerate(sources)]
        # Invariant: every outcome not yet handed out is in _ready, in arrival order.
        self._ready: deque[_Outcome] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        pumping = sum(s.pump is not None and not s.pump.done() for s in self._active)
        waiting = len(self._ready)
        return f"<AsyncIteratorCombiner size={self.size} pumping={pumping} waiting={waiting}>"

    @property
    def size(self) -> int:
        """The number of sources not yet exhausted."""
        return len(self._active)

    # -- pumps --------------------------------------------------------------------------

    def _start_pumps(self, slots: list[_Slot] | None = None) -> None:
        for slot in self._active if slots is None else slots:
            if slot.pump is None and not slot.ended:
                slot.pump = asyncio.ensure_future(self._pump(slot))

    async def _pump(self, slot: _Slot) -> None:
        anext = slot.iterator.__anext__
        ready = self._ready
        read_ahead = slot.read_ahead
        loop = asyncio.get_running_loop()
        while True:
            slot.pulling = True
            try:
                value = await anext()
            except StopAsyncIteration as end:
                outcome: _Outcome = (slot, _END, end.args[0] if end.args else _NO_FINAL)
            except asyncio.CancelledError:
                raise  # the combiner is being torn down (see _stop_pumps)
            except BaseException as error:
                outcome = (slot, _ERROR, error)
            else:
                outcome = (slot, _VALUE, value)
            slot.pulling = False
            kind = outcome[1]
            if kind == _VALUE and slot.drop_next:
                slot.drop_next = False
                continue
            ready.append(outcome)
            slot.waiting += 1
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if kind != _VALUE:
                slot.ended = True
                return
            if slot.waiting > read_ahead:
                slot.permit = loop.create_future()
                try:
                    await slot.permit
                finally:
                    slot.permit = None

    async def _wait(self) -> None:
        """Wait until some pump delivers an outcome."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self, position: int = 0) -> tuple[_Slot, bool, Any]:
        """Remove the outcome at ``position`` of the ready queue and hand it out as
        ``(slot, True, value)`` or ``(slot, False, final value)``.

        Wakes the slot's pump if this made room; removes a source that ended or
        failed, raising its error.
        """
        ready = self._ready
        if position == 0:
            slot, kind, value = ready.popleft()
        else:
            slot, kind, value = ready[position]
            del ready[position]
        slot.waiting -= 1
        permit = slot.permit
        if permit is not None and slot.waiting <= slot.read_ahead and not permit.done():
            permit.set_result(None)
        if kind == _VALUE:
            return slot, True, value
        self._remove(slot)
        if kind == _END:
            return slot, False, value
        raise value

    def _position(self, accept: Callable[[_Slot], bool]) -> int:
        """The position of the first outcome, in arrival order, of a slot ``accept``
        allows; -1 if there is none."""
        for position, outcome in enumerate(self._ready):
            if accept(outcome[0]):
                return position
        return -1

    async def _next_of(self, slot: _Slot) -> tuple[bool, Any]:
        """Take the next outcome of one source, pulling it directly if it has no pump."""
        if slot.pump is None and not slot.waiting:
            try:
                return True, await slot.iterator.__anext__()
            except StopAsyncIteration as end:
                self._remove(slot)
                return False, end.args[0] if end.args else _NO_FINAL
            except BaseException:
                self._remove(slot)
                raise
        while not slot.waiting:
            await self._wait()
        _, ok, value = self._take(self._position(lambda other: other is slot))
        return ok, value

    def _remove(self, slot: _Slot) -> None:
        try:
            self._active.remove(slot)
        except ValueError:
            pass

    async def _stop_pumps(self, slots: list[_Slot] | None = None) -> None:
        """Cancel the pumps (of ``slots``, default all) and wait until they ended.

        A pump cancelled while parked leaves its source intact (a later call starts a
        new pump); one cancelled in the middle of a pull has broken its source, which
        is then dropped.
        """
        stopped: list[tuple[_Slot, asyncio.Task[None]]] = []
        for slot in list(self._active) if slots is None else slots:
            pump = slot.pump
            if pump is not None and not pump.done():
                pump.cancel()
                stopped.append((slot, pump))
        if not stopped:
            return
        await asyncio.gather(*(pump for _, pump in stopped), return_exceptions=True)
        for slot, _ in stopped:
            slot.pump = None
            if slot.pulling:
                slot.pulling = False
                self._remove(slot)

    async def aclose(self) -> None:
        """Cancel every pump and close every source that has ``aclose``."""
        await self._stop_pumps()
        self._active.clear()
        self._ready.clear()
        for source in self._sources:
            await aclose_quietly(source)

    async def __aenter__(self) -> AsyncIteratorCombiner[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- strategies ---------------------------------------------------------------------

    def race_generator(self, yield_final_values: bool = False) -> AsyncGenerator[T, None]:
        """Yield values in the order they arrive, from whichever source is first.

        Ends when every source is exhausted; leaving it early cancels the pumps.
        """
        return self.race_shaped(_value_only, yield_final_values)

    def race_indexed(self, yield_final_values: bool = False) -> AsyncGenerator[tuple[int, T], None]:
        """Like :meth:`race_generator`, yielding ``(source index, value)`` pairs."""
        return self.race_shaped(_index_and_value, yield_final_values)

    async def race_shaped(
        self,
        shape: Callable[[int, T], R],
        yield_final_values: bool = False,
        owner: PullObj[Any] | None = None,
    ) -> AsyncGenerator[R, None]:
        """Like :meth:`race_generator`, yielding ``shape(source index, value)``.

        With ``owner`` (the pull object whose cycle this generator is), the
        generator also does what a pull object's consumer-facing iteration does: it
        ends after the item in flight once ``owner.close()`` was called, and when it
        is left early or fails it closes ``owner`` and its upstream. The racing pull
        objects iterate it directly this way, saving a generator layer per item.
        """
        completed = False
        ready = self._ready
        self._start_pumps()
        try:
            while self._active:
                if not ready:
                    await self._wait()
                    continue
                slot, ok, value = self._take()
                if ok or (yield_final_values and value is not _NO_FINAL):
                    yield shape(slot.index, value)
                    if owner is not None and owner._closing:
                        break
            completed = True
        finally:
            # Interleavings: left early, failed or cancelled (not completed), or ended
            # by a graceful close with pulls still in flight: stop the pumps before
            # the sources are closed.
            if not completed or (owner is not None and owner._closing):
                await self._stop_pumps()
                if owner is not None:
                    await owner.aclose()

    async def round_robin_generator(
        self, yield_final_values: bool = False
    ) -> AsyncGenerator[T, None]:
        """Yield one value per source in turn (0, 1, 2, 0, ...), dropping exhausted
        sources. Pulls are sequential: only the source whose turn it is is pulled."""
        async with contextlib.aclosing(self.round_robin_indexed(yield_final_values)) as pairs:
            async for _, value in pairs:
                yield value

    async def round_robin_indexed(
        self, yield_final_values: bool = False
    ) -> AsyncGenerator[tuple[int, T], None]:
        """Like :meth:`round_robin_generator`, yielding ``(source index, value)`` pairs."""
        position = 0
        while self._active:
            position %= len(self._active)
            slot = self._active[position]
            ok, value = await self._next_of(slot)
            if ok:
                position += 1
                yield slot.index, value
            elif yield_final_values and value is not _NO_FINAL:
                yield slot.index, value

    async def race_robin_generator(self) -> AsyncGenerator[T, None]:
        """Race in rounds (see :meth:`race_robin_indexed`), yielding values."""
        async with contextlib.aclosing(self.race_robin_indexed()) as pairs:
            async for pair in pairs:
                assert pair is not None
                yield pair[1]

    async def race_robin_indexed(
        self, cutoff: AsyncIterable[Any] | None = None
    ) -> AsyncGenerator[tuple[int, T] | None, None]:
        """Race in rounds: every live source delivers exactly one value per round,
        fastest first, before the next round starts (a fast source cannot starve a
        slow one; what it fetched ahead waits for the next round).

        With ``cutoff``, the cutoff source is pulled once per round (strictly: no
        read-ahead); if it yields before the round is complete, ``None`` is yielded to
        mark the cut and the next round starts. Values still on their way carry over
        to the next round, so nothing is lost.
        """
        cut = _Slot(-1, cutoff, 0) if cutoff is not None else None
        completed = False
        self._start_pumps()
        try:
            while self._active:
                waiting = set(self._active)
                if cut is not None:
                    waiting.add(cut)
                    if cut.pump is None:
                        cut.pump = asyncio.ensure_future(self._pump(cut))
                while len(waiting) > (cut is not None and cut in waiting):
                    position = self._position(waiting.__contains__)
                    if position < 0:
                        await self._wait()
                        continue
                    slot = self._ready[position][0]
                    waiting.discard(slot)
                    if slot is cut:
                        ok, _ = self._take_cutoff(position)
                        if not ok:
                            cut = None  # the cutoff source ended: no more cutoffs
                            continue
                        yield None
                        break
                    _, ok, value = self._take(position)
                    if ok:
                        yield slot.index, value
            completed = True
        finally:
            if cut is not None:
                await self._stop_pumps([cut])
            if not completed:
                await self._stop_pumps()

    def _take_cutoff(self, position: int) -> tuple[bool, Any]:
        slot, kind, value = self._ready[position]
        del self._ready[position]
        slot.waiting -= 1
        if slot.permit is not None and not slot.permit.done():
            slot.permit.set_result(None)
        if kind == _VALUE:
            return True, value
        if kind == _END:
            return False, None
        raise value

    async def all(self, yield_final_values: bool = False) -> list[T]:
        """Pull one value from every live source concurrently; return them in source
        order (a source that ends contributes its final value if requested, else
        nothing). Raises the first error, in source order, after every source has
        delivered."""
        return [value for _, value in await self.all_indexed(yield_final_values)]

    async def all_indexed(self, yield_final_values: bool = False) -> list[tuple[int, T]]:
        """Like :meth:`all`, returning ``(source index, value)`` pairs."""
        slots = list(self._active)
        self._start_pumps(slots)
        while not all(slot.waiting for slot in slots):
            await self._wait()
        pairs: list[tuple[int, T]] = []
        first_error: BaseException | None = None
        for slot in slots:
            try:
                ok, value = await self._next_of(slot)
            except Exception as error:
                first_error = first_error or error
                continue
            if ok or (yield_final_values and value is not _NO_FINAL):
                pairs.append((slot.index, value))
        if first_error is not None:
            raise first_error
        return pairs

    async def race(self, yield_final_values: bool = False, discard_round: bool = False) -> T:
        """Return the first value to arrive from any source.

        Exhausted sources are skipped (their final value wins if requested). Values
        arriving later wait for the next call, unless ``discard_round`` is true: then
        the values already waiting are dropped and the pumps stopped.

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
        self._start_pumps()
        try:
            while self._active:
                if not self._ready:
                    await self._wait()
                    continue
                try:
                    _, ok, value = self._take()
                except Exception as error:
                    if not tolerate_errors:
                        raise
                    errors.append(error)
                    continue
                if ok or (finals and value is not _NO_FINAL):
                    return value  # type: ignore[no-any-return]
        finally:
            if discard_round:
                self._discard()
        if errors:
            raise AnyFailedError(errors)
        raise StopAsyncIteration

    def _discard(self) -> None:
        """Drop every value waiting, and the value of every pull in flight."""
        position = 0
        while position < len(self._ready):
            if self._ready[position][1] == _VALUE:
                self._take(position)
            else:
                position += 1
        for slot in self._active:
            if slot.pulling:
                slot.drop_next = True
