"""The one waiter queue every primitive parks on, and :class:`WaitObject`.

Buffers, capacity sources and signals all wait through :class:`ParkingLot`, so
fairness (FIFO wake-up) and cancellation (a woken waiter that is cancelled passes
its wake-up on) are written once, here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final, Generic, TypeVar

from ._exceptions import SignalStoppedError

__all__ = ["TIMED_OUT", "ParkingLot", "WaitObject"]

T = TypeVar("T")


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final = _TimedOut()
"""What :meth:`ParkingLot.park` returns when its timeout expires first."""


class ParkingLot:
    """A FIFO queue of parked tasks, woken explicitly by :meth:`unpark`.

    ``park()`` never misses a wake-up that was meant for it: if a task is woken and
    then cancelled before it runs, its wake-up goes to the next parked task. The lot
    holds no state besides its waiters; callers re-check their own condition after
    waking (a wake-up is a hint, not a grant).
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        # Invariant: every future here is pending; insertion order is wake-up order.
        self._waiters: dict[asyncio.Future[Any], None] = {}

    def __len__(self) -> int:
        return len(self._waiters)

    def __repr__(self) -> str:
        return f"<ParkingLot parked={len(self._waiters)}>"

    async def park(self, timeout: float | None = None) -> Any:
        """Wait until woken by :meth:`unpark`; return the value it passed.

        Args:
            timeout: seconds to wait at most; ``None`` waits forever.

        Returns:
            The ``value`` given to ``unpark``/``unpark_all``, or :data:`TIMED_OUT`.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiters[fut] = None
        timer = None if timeout is None else loop.call_later(timeout, self._expire, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            # Interleaving: unpark() set our result, then our task was cancelled before
            # it resumed. The wake-up was meant for a live waiter: pass it on.
            if fut.done() and not fut.cancelled():
                value = fut.result()
                if value is not TIMED_OUT:
                    self.unpark(1, value)
            raise
        finally:
            self._waiters.pop(fut, None)
            if timer is not None:
                timer.cancel()

    def unpark(self, count: int = 1, value: Any = None) -> int:
        """Wake the ``count`` longest-parked tasks with ``value``; return how many woke.

        Waiters whose ``park()`` already ended (cancelled an instant ago, their task not
        yet resumed) are skipped and not counted.
        """
        woken = 0
        waiters = self._waiters
        while waiters and woken < count:
            fut = next(iter(waiters))
            del waiters[fut]
            # Interleaving: the waiting task was cancelled (its future is cancelled) but
            # has not run its cleanup yet. It is no longer waiting: skip it.
            if fut.done():
                continue
            fut.set_result(value)
            woken += 1
        return woken

    def unpark_all(self, value: Any = None) -> int:
        """Wake every parked task with ``value``; return how many woke."""
        waiters = self._waiters
        self._waiters = {}
        woken = 0
        for fut in waiters:
            if not fut.done():  # skip waiters cancelled an instant ago (see unpark)
                fut.set_result(value)
                woken += 1
        return woken

    def _expire(self, fut: asyncio.Future[Any]) -> None:
        # The timeout fired: the waiter leaves the lot now, so a later unpark() in the
        # same loop iteration neither picks it nor counts it.
        if not fut.done():
            self._waiters.pop(fut, None)
            fut.set_result(TIMED_OUT)


_UNSET: Any = object()


class WaitObject(AsyncIterator[T], Generic[T]):
    """A coalescing signal: a resettable sequence of one-shot wake-ups.

    ``resolve(value)`` wakes every task parked in :meth:`wait` with ``value``. With
    nobody waiting the value is stored, and the *last* stored value wins: several
    resolves collapse into one, delivered at once by the next ``wait()``. Producers
    can therefore signal freely without building a queue.

    ``reject(error)`` is sticky: every current and later ``wait()`` raises ``error``.
    ``stop()`` is sticky too: ``wait()`` raises :class:`SignalStoppedError` and
    ``async for`` over the object ends.

    Args:
        label: a name shown in ``repr`` (debugging only).
        init_value: if given, stored as the pending value, so the first ``wait()``
            returns it at once.
    """

    def __init__(self, label: str = "", init_value: Any = _UNSET) -> None:
        self.label = label
        self._pending: Any = init_value
        self._error: BaseException | None = None
        self._stopped = False
        self._lot = ParkingLot()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "rejected" if self._error else "live"
        pending = "" if self._pending is _UNSET else f" pending={self._pending!r}"
        return f"<WaitObject {self.label!r} {state} waiters={len(self._lot)}{pending}>"

    @property
    def has_pending(self) -> bool:
        """Whether a resolved value is stored, waiting for the next ``wait()``."""
        return self._pending is not _UNSET

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    @property
    def waiters(self) -> int:
        """How many tasks are parked in :meth:`wait`."""
        return len(self._lot)

    def resolve(self, value: Any = None) -> None:
        """Signal ``value``: wake all waiters, or store it (last wins) if none wait."""
        if self._stopped or self._error is not None:
            return
        if self._lot.unpark_all(value) == 0:
            self._pending = value

    def reject(self, error: BaseException) -> None:
        """Fail every current and later ``wait()`` with ``error`` (sticky)."""
        if self._stopped or self._error is not None:
            return
        self._error = error
        self._pending = _UNSET
        self._lot.unpark_all()

    def stop(self) -> None:
        """End the signal: ``wait()`` raises :class:`SignalStoppedError` from now on."""
        if self._stopped:
            return
        self._stopped = True
        self._lot.unpark_all()

    def clear(self) -> None:
        """Drop a stored value that nobody has waited for yet."""
        self._pending = _UNSET

    async def wait(self) -> T:
        """Return the next signalled value, waiting for one if none is stored.

        Raises:
            SignalStoppedError: the signal was stopped.
            BaseException: the error given to :meth:`reject`.
        """
        self._check()
        value = self._pending
        if value is not _UNSET:
            self._pending = _UNSET
            return value  # type: ignore[no-any-return]
        value = await self._lot.park()
        self._check()
        return value  # type: ignore[no-any-return]

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:
            raise SignalStoppedError(f"WaitObject {self.label!r} was stopped")

    def __aiter__(self) -> WaitObject[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.wait()
        except SignalStoppedError:
            raise StopAsyncIteration from None
