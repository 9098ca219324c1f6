"""A FIFO turn: the serialiser behind stateful push stages and bidirectional chains.

One holder at a time; everyone else parks on a :class:`~pullpush._sync.ParkingLot`
in arrival order. The uncontended path costs two attribute checks and a store, so
callers inline it::

    turn = self._turn
    if turn.busy or turn.queued:
        await turn.wait()          # slow path: park until it is our turn
    else:
        turn.busy = True           # fast path: nobody holds or waits
    try:
        ...                        # the guarded work
    finally:
        if turn.queued or turn.pending is not None:
            await turn.release()   # slow path: hand over, or run the pending end
        else:
            turn.busy = False

``pending`` is an end action (closing, failing) that was requested while the turn
was held. It runs, still holding the turn, once nobody is left waiting: values sent
before the close are delivered before it.

The turn is not re-entrant: a holder that waits for its own turn again (a stage
whose downstream sends back into it) waits forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._sync import ParkingLot

__all__ = ["Turn"]


class Turn:
    """A FIFO mutual-exclusion turn with a deferred end action."""

    __slots__ = ("_lot", "busy", "pending", "queued")

    def __init__(self) -> None:
        # Invariant: busy is True exactly while a holder runs (or runs ``pending``).
        self.busy = False
        # Invariant: queued counts tasks inside wait() (parked, or woken and not yet
        # resumed). While it is non-zero, newcomers park too: no barging past a
        # woken waiter, so the turn goes in arrival order.
        self.queued = 0
        # Invariant: pending is the end action requested while busy (run once, by
        # the last holder, when queued drops to zero), else None.
        self.pending: Callable[[], Awaitable[None]] | None = None
        self._lot = ParkingLot()

    def __repr__(self) -> str:
        state = "busy" if self.busy else "free"
        end = " end-pending" if self.pending is not None else ""
        return f"<Turn {state} queued={self.queued}{end}>"

    @property
    def idle(self) -> bool:
        """Whether nobody holds the turn or waits for it."""
        return not self.busy and not self.queued

    async def wait(self) -> None:
        """Park until it is this task's turn; return holding it.

        Cancellation withdraws the waiter. A wake-up it had already received is
        passed to the next parked task by the parking lot; if none is parked and an
        end action is pending, the cancelled waiter runs that action before
        re-raising, so the end is never lost.
        """
        lot = self._lot
        self.queued += 1
        try:
            while True:
                await lot.park()
                # A wake-up is a hint: re-check (the turn is normally free here,
                # because nobody barges while queued is non-zero).
                if not self.busy:
                    break
        except BaseException:
            self.queued -= 1
            if not self.busy and not self.queued and self.pending is not None:
                # Interleaving: the last holder woke us to go before the pending
                # end, then we were cancelled with nobody left to pass the turn to.
                self.busy = True
                await self.release()
            raise
        self.queued -= 1
        self.busy = True

    async def run(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action()`` in a turn of its own, after everyone already waiting."""
        if self.busy or self.queued:
            await self.wait()
        else:
            self.busy = True
        try:
            await action()
        finally:
            if self.queued or self.pending is not None:
                await self.release()
            else:
                self.busy = False

    async def run_or_defer(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run the end action ``action()`` now if the turn is idle; else leave it
        ``pending``, for the last holder to run once nobody waits any more."""
        if self.busy or self.queued:
            self.pending = action
            return
        self.busy = True
        try:
            await action()
        finally:
            await self.release()

    async def release(self) -> None:
        """Give up the turn: wake the next waiter, or run the pending end action."""
        if self.queued:
            self.busy = False
            self._lot.unpark()
            return
        end = self.pending
        if end is None:
            self.busy = False
            return
        self.pending = None
        try:
            await end()
        finally:
            self.busy = False
            if self.queued:
                # Interleaving: someone parked while the end action ran (it can
                # only be a caller that will see the object finished and leave).
                self._lot.unpark()
