"""The many-iterator engine under every pull combiner.

Each source of an :class:`AsyncIteratorCombiner` that has to be pulled concurrently
with the others gets one long-lived **pump** task. A pump pulls its source one item
at a time (a source is never pulled concurrently with itself, which async
generators forbid), appends each value to its slot, and the slot itself to the
combiner's arrival queue -- one entry per *outcome* (a value, or the end or error
that ends the source, which the slot keeps)::

    source 0 --pump--> slot 0 values --+
    source 1 --pump--> slot 1 values --+--> ready: slots, in arrival order --> race / any
    source 2 --pump--> slot 2 values --+                                  --> all / round robin

Read-ahead: a pump stops pulling while its slot holds more than ``read_ahead``
values the consumer has not taken; taking one lets it go on. ``read_ahead=0`` is
FireFoundry's strict behaviour (a source is pulled again only once its previous
value was taken). The default of 8 bounds memory just the same but lets a source
that has items ready hand over several per task switch. Round-robin and
concatenation do not race and pull strictly on demand.

Task switches are what a race pays for beyond the pulls themselves, so they are
kept to one per batch: a pump that found its slot full first yields one turn of
the event loop (the consumer, already scheduled, takes the batch meanwhile) and
parks on a future only if that made no room; a consumer that finds nothing ready
while a pump is already scheduled to run yields one turn instead of parking; a
parked consumer is woken by the first outcome of a batch, not by each.

Nothing is lost between calls: outcomes that arrive after ``race()`` returned wait
for the next call. Leaving a generator early, or :meth:`~AsyncIteratorCombiner.aclose`,
cancels the pumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Generator,
    Sequence,
)
from typing import Any, Generic, TypeVar

from .._exceptions import AnyFailedError
from .._obj import PullObj, aclose_quietly
from .._util import check_int
from ._combiner_slot import _END, _ERROR, _NO_FINAL, _Slot

__all__ = ["DEFAULT_READ_AHEAD", "AnyFailedError", "AsyncIteratorCombiner"]

DEFAULT_READ_AHEAD = 64
"""Values each raced source may have waiting for the consumer, by default.

Decided: 64. A race's cost is its task switches when sources never wait: each pump
runs until its source is this far ahead, then hands over. At 8 (the first default) a
race over 4 in-memory sources took 1.16x the time of an unbounded ``asyncio.Queue``
merge, at 64 0.88x (``bench/operators.py``, 2 cores, CPython 3.11), while memory
stays bounded at 64 values a source. ``0`` is FireFoundry's strict one pull at a
time."""

T = TypeVar("T")
P = TypeVar("P", bound=tuple[Any, ...])

_new_tuple = tuple.__new__


@types.coroutine
def _one_turn() -> Generator[None, None, None]:
    """Let every task already scheduled run once (a bare yield, as ``sleep(0)``)."""
    yield


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

    def __init__(self, *sources: AsyncIterable[T], read_ahead: int = DEFAULT_READ_AHEAD) -> None:
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
        # Invariant: every outcome not yet handed out has its slot in _ready, in
        # arrival order (see _Slot.values).
        self._ready: deque[_Slot] = deque()
        # Invariant: _waiter is the future the consumer is parked on, until the
        # first outcome to arrive wakes it (and clears it).
        self._waiter: asyncio.Future[None] | None = None
        # Invariant: _let_out is set once a parked pump was let go since the consumer
        # last waited; _turning counts the pumps yielding a turn with a full slot.
        # Either way a pump is scheduled to run before the consumer's next turn.
        self._let_out = False
        self._turning = 0

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
            if slot.pump is None and not slot.end:
                slot.pump = asyncio.ensure_future(self._pump(slot))

    async def _pump(self, slot: _Slot) -> None:
        # The loop body runs once per item: keep it to what every item needs (two
        # appends and three checks); waking the consumer, yielding and parking
        # happen once per batch.
        anext = slot.iterator.__anext__
        values = slot.values
        keep = values.append
        arrive = self._ready.append
        read_ahead = slot.read_ahead
        loop = asyncio.get_running_loop()
        slot.pulling = True
        try:
            while True:
                value = await anext()
                if slot.drop_next:
                    slot.drop_next = False
                    continue
                keep(value)
                arrive(slot)
                if self._waiter is not None:
                    self._wake()
                if len(values) > read_ahead:
                    # Full. First one turn of the loop: the consumer, scheduled already
                    # when it is busy taking, makes room without a future or a wake-up.
                    slot.pulling = False
                    self._turning += 1
                    try:
                        await _one_turn()
                    finally:
                        self._turning -= 1
                    while len(values) > read_ahead:
                        slot.permit = permit = loop.create_future()
                        try:
                            await permit
                        finally:
                            # Interleavings: let go by the consumer (which cleared
                            # permit already), or cancelled while parked by _stop_pumps.
                            slot.permit = None
                    slot.pulling = True
        except StopAsyncIteration as end:
            slot.end, slot.final = _END, end.args[0] if end.args else _NO_FINAL
        except asyncio.CancelledError:
            raise  # the combiner is being torn down (see _stop_pumps)
        except BaseException as error:
            slot.end, slot.final = _ERROR, error
        slot.pulling = False
        arrive(slot)
        if self._waiter is not None:
            self._wake()

    def _let_go(self, slot: _Slot) -> None:
        """Wake the parked pump of ``slot`` (there is room again)."""
        permit = slot.permit
        slot.permit = None
        if permit is not None and not permit.done():  # done: cancelled with the pump
            permit.set_result(None)
            self._let_out = True

    def _wake(self) -> None:
        """Wake the parked consumer (an outcome arrived)."""
        waiter = self._waiter
        self._waiter = None  # once per batch: later outcomes see no waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        """Wait until some pump may have delivered an outcome (callers check again).

        When a pump is scheduled to run before the consumer's next turn (it was let
        go, or it yields a turn with a full slot), one bare turn of the event loop
        lets it deliver, and costs neither a future nor a wake-up. Otherwise park
        until a pump delivers.
        """
        if self._let_out or self._turning:
            self._let_out = False
            await _one_turn()
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            # Interleavings: woken by a pump (which cleared _waiter already), or
            # the consumer was cancelled while waiting.
            self._waiter = None

    def _take(self, position: int = 0) -> tuple[_Slot, bool, Any]:
        """Remove the outcome at ``position`` of the ready queue and hand it out as
        ``(slot, True, value)`` or ``(slot, False, final value)``.

        Lets the slot's pump go on if this made room; removes a source that ended or
        failed, raising its error.
        """
        ready = self._ready
        if position == 0:
            slot = ready.popleft()
        else:
            slot = ready[position]
            del ready[position]
        values = slot.values
        if values:
            value = values.popleft()
            if slot.permit is not None:
                self._let_go(slot)
            return slot, True, value
        self._remove(slot)
        if slot.end == _END:
            return slot, False, slot.final
        raise slot.final

    def _position(self, accept: Callable[[_Slot], bool]) -> int:
        """The position of the first outcome, in arrival order, of a slot ``accept``
        allows; -1 if there is none."""
        for position, slot in enumerate(self._ready):
            if accept(slot):
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
        _, ok, value = self._take(self._ready.index(slot))
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
        return self.race_shaped(None, tuple, yield_final_values)

    def race_indexed(self, yield_final_values: bool = False) -> AsyncGenerator[tuple[int, T], None]:
        """Like :meth:`race_generator`, yielding ``(source index, value)`` pairs."""
        return self.race_shaped(range(len(self._sources)), tuple, yield_final_values)

    async def race_shaped(
        self,
        keys: Sequence[Any] | None,
        pair: type[P],
        yield_final_values: bool = False,
        owner: PullObj[Any] | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Like :meth:`race_generator`; with ``keys``, yield ``pair((keys[source
        index], value))`` (a tuple type: ``tuple``, or a named tuple) instead of the
        value.

        With ``owner`` (the pull object whose cycle this generator is), the
        generator also does what a pull object's consumer-facing iteration does: it
        ends after the item in flight once ``owner.close()`` was called, and when it
        is left early or fails it closes ``owner`` and its upstream. The racing pull
        objects' ``async for`` steps it directly this way (through
        :class:`~pullpush._obj._Iteration`), saving a generator layer per item.
        """
        completed = False
        ready = self._ready
        take = ready.popleft
        active = self._active
        self._start_pumps()
        try:
            while active:
                if not ready:
                    if self._let_out or self._turning:  # self._wait(), inlined
                        self._let_out = False
                        await _one_turn()
                    else:
                        await self._wait()
                    continue
                # self._take(), inlined: this loop runs once per item.
                slot = take()
                values = slot.values
                if values:
                    value = values.popleft()
                    if slot.permit is not None:
                        self._let_go(slot)
                else:  # the end or an error
                    self._remove(slot)
                    value = slot.final
                    if slot.end == _ERROR:
                        raise value
                    if not yield_final_values or value is _NO_FINAL:
                        continue
                if keys is None:
                    yield value
                else:
                    yield _new_tuple(pair, (keys[slot.index], value))
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
                    slot, ok, value = self._take(position)
                    waiting.discard(slot)
                    if slot is cut:
                        if not ok:
                            cut = None  # the cutoff source ended: no more cutoffs
                            continue
                        yield None
                        break
                    if ok:
                        yield slot.index, value
            completed = True
        finally:
            if cut is not None:
                await self._stop_pumps([cut])
            if not completed:
                await self._stop_pumps()

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
        dropping = {slot: len(slot.values) for slot in self._active if slot.values}
        if dropping:
            # A slot's first entries are its values; an end entry stays in place.
            ready = self._ready
            kept = []
            for slot in ready:
                left = dropping.get(slot, 0)
                if left:
                    dropping[slot] = left - 1
                else:
                    kept.append(slot)
            ready.clear()
            ready.extend(kept)
            for slot in dropping:
                slot.values.clear()
                if slot.permit is not None:
                    self._let_go(slot)
        for slot in self._active:
            if slot.pulling:
                slot.drop_next = True
