"""Serialised push stages: one value at a time, in arrival order.

:class:`PushObjSerial1To1` is the base of every stateful push stage (reduce, buffer,
window, window-timeout, buffer-reduce) and of :class:`PushSerialObj`. Concurrent
``asend`` calls take turns on a FIFO :class:`~pullpush.push._turn.Turn`; the uncontended
path is a busy flag, so a stage used from one producer pays almost nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .._obj import PushObj, PushObj1To1
from ._turn import Turn

__all__ = ["PushObjSerial1To1", "PushSerialObj"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")


class PushObjSerial1To1(PushObj1To1[IN, OUT], Generic[IN, OUT]):
    """Base of push stages whose ``asend`` calls take turns.

    Each ``asend`` holds the stage's turn for its whole :meth:`next_impl`, including
    the forward downstream, so concurrent senders never interleave inside the stage:
    its state is never read half-updated, and its outputs leave in the order the
    values arrived. Waiting senders park in FIFO order (backpressure: a sender
    returns once its own value has been handled).

    ``aclose()`` and ``athrow()`` never wait for sends in flight. The stage stops
    accepting new values at once; if a send is in progress or queued, the end
    (flush, then close or fail the sink) is deferred until those sends finish, and
    is run by the last of them. This also makes closing a stage from inside its own
    downstream safe. Values already queued when the close arrived are delivered.

    Cancelling a sender that waits for its turn withdraws its value; cancelling one
    in progress interrupts its downstream work and releases the turn.

    A stage's downstream must not send back into the same stage (a feedback loop):
    that send would wait for its own turn forever.
    """

    def __init__(self, sink: PushObj[OUT]) -> None:
        super().__init__(sink)
        self._turn = Turn()

    async def asend(self, value: IN) -> bool:
        """Handle ``value`` in its turn; return whether the stage still accepts values."""
        if self._done:
            return False
        # Turn.run, inlined: the uncontended path is two checks and a store.
        turn = self._turn
        if turn.busy or turn.queued:
            await turn.wait()
            if self._done and turn.pending is None:
                # Finished while we waited (the sink became done): drop the value.
                await turn.release()
                return False
        else:
            turn.busy = True
        try:
            await self.next_impl(value)
        finally:
            # Runs on success, error and cancellation alike: the turn is never kept.
            if turn.queued or turn.pending is not None:
                await turn.release()
            else:
                turn.busy = False
        return not self._done

    async def run_end(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run the close/throw action now if the turn is idle, else after the sends
        in progress and queued (the last of them runs it)."""
        await self._turn.run_or_defer(action)

    async def run_in_turn(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action()`` holding the stage's turn (after the sends queued before it).

        For work that is not an ``asend`` but touches the stage's state, such as a
        timer's flush.
        """
        await self._turn.run(action)


class PushSerialObj(PushObjSerial1To1[T, T]):
    """Forward values to ``sink`` one at a time, in arrival order.

    Concurrent ``asend`` calls queue on a FIFO turn (see
    :class:`PushObjSerial1To1`): no value is lost, none is reordered, and there is
    no generator priming -- the first value sent is delivered (decision C2). Each
    ``asend`` returns once its value has been delivered downstream.
    """
