"""``PrioritySourceObj``: a pull source that yields the most urgent queued item first."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from .._clock import Clock, resolve_clock
from .._exceptions import SourceClosedError
from .._obj import SourceObj
from .._sync import ParkingLot
from ._aging import AgingEntry, AgingQueue

__all__ = ["PrioritySourceObj", "check_priority"]

T = TypeVar("T")


def check_priority(name: str, value: object) -> float:
    """Return ``value`` if it is a real number (not NaN), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    return value


class PrioritySourceObj(SourceObj[T]):
    """Yield queued items, highest effective priority first; ties first in, first out.

    ``enqueue(item, priority)`` adds an item at any time (a larger priority is more
    urgent). While the source is open and empty, a pull waits for the next enqueue
    (a long-running broker); after :meth:`close_source` it drains what is left and
    ends.

    Aging: an item's effective priority grows by ``aging_rate`` per second waited,
    by at most ``max_age_boost``::

        effective = priority + min(aging_rate * seconds_waited, max_age_boost)

    It is re-evaluated whenever the queue is looked at, so aging is continuous.
    Enqueue, peek and pull are O(log n) (a heap, not a scan: see
    ``scheduling/_aging.py``).

    Peek then pull: a pull yields the item the last :meth:`peek` returned, unless
    items were enqueued in between, so a consumer that checks the head (e.g. whether
    it can afford it) gets that head even while aging reorders the queue.

    Args:
        aging_rate: priority gained per second waited (>= 0; default 0: no aging).
        max_age_boost: the most aging can add (>= 0; default ``inf``).
        clock: where time is read; default :func:`time.monotonic`.
    """

    def __init__(
        self,
        *,
        aging_rate: float = 0.0,
        max_age_boost: float = math.inf,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self._queue: AgingQueue[T] = AgingQueue(aging_rate, max_age_boost)
        self._clock = resolve_clock(clock)
        self._lot = ParkingLot()
        self._input_closed = False
        # Invariant: the entry the last peek() returned, while nothing was enqueued
        # since (None otherwise).
        self._peeked: AgingEntry[T] | None = None

    @property
    def aging_rate(self) -> float:
        """Priority gained per second waited."""
        return self._queue.aging_rate

    @property
    def max_age_boost(self) -> float:
        """The most priority aging can add."""
        return self._queue.max_age_boost

    @property
    def size(self) -> int:
        """How many items are queued."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether the source takes no more items (:meth:`close_source`, ``close()``
        or ``aclose()`` was called)."""
        return self._input_closed or self._closing

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<PrioritySourceObj {state} size={len(self._queue)}>"

    def enqueue(self, item: T, priority: float) -> None:
        """Queue ``item`` with base ``priority`` (larger is more urgent); wake a pull.

        Raises:
            SourceClosedError: the source is closed.
            TypeError: ``priority`` is not a number.
            ValueError: ``priority`` is NaN.
        """
        if self.closed:
            raise SourceClosedError(f"cannot enqueue into a closed {type(self).__name__}")
        check_priority("priority", priority)
        self._queue.push(item, priority, self._clock())
        self._peeked = None
        self._lot.unpark_all()

    def close_source(self) -> None:
        """Take no more items: pulls drain what is queued, then the stream ends."""
        self._input_closed = True
        self._lot.unpark_all()

    def peek(self) -> T | None:
        """Return the item a pull would yield now, or ``None`` if the queue is empty."""
        entry = self._peeked
        if entry is None or not entry.queued:
            entry = self._peeked = self._queue.peek(self._clock())
        return None if entry is None else entry.item

    def _interrupt(self) -> None:
        self._lot.unpark_all()

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        queue = self._queue
        while not self._closing:
            entry, self._peeked = self._peeked, None
            if entry is not None and entry.queued:
                queue.remove(entry)
            else:
                entry = queue.pop(self._clock())
            if entry is not None:
                yield entry.item
            elif self._input_closed:
                return
            else:
                await self._lot.park()
