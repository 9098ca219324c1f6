"""A priority queue with linear aging and a cap, in O(log n) per operation.

Effective priority of an item enqueued at ``t0`` with base priority ``p``::

    eff(now) = p + min(rate * (now - t0), max_boost)

Highest effective priority first; ties go to the earliest enqueued.

Re-scoring every item on every pop would be O(n). Instead:

* While an item is *uncapped* (``rate * (now - t0) < max_boost``), ``eff(now) =
  (p - rate * t0) + rate * now``: the term ``rate * now`` is the same for every
  item, so uncapped items keep a fixed order by ``u = p - rate * t0``. One heap.
* Once *capped*, ``eff = p + max_boost``: also time-invariant. A second heap.
* An item becomes capped at ``t_cap = t0 + max_boost / rate``, which is fixed too:
  a third heap by ``t_cap`` tells which items to move, lazily, when the queue is
  next looked at. Each item moves at most once.

The best item is the better of the two heads. Removal is lazy (entries are marked
and skipped when they surface; the heaps are compacted when stale copies outnumber
live entries). Every operation is O(log n) amortised. Time must not go backwards.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

__all__ = ["AgingEntry", "AgingQueue"]

T = TypeVar("T")

_UNCAPPED, _CAPPED, _REMOVED = 0, 1, 2


class AgingEntry(Generic[T]):
    """One queued item and where it lives."""

    __slots__ = ("base", "enqueued_at", "item", "seq", "where")

    def __init__(self, item: T, base: float, enqueued_at: float, seq: int) -> None:
        self.item = item
        self.base = base
        self.enqueued_at = enqueued_at
        self.seq = seq
        # Invariant: _UNCAPPED (live in the uncapped heap), _CAPPED (live in the capped
        # heap) or _REMOVED (popped or removed; stale copies are skipped).
        self.where = _UNCAPPED

    @property
    def queued(self) -> bool:
        """Whether the entry is still in its queue."""
        return self.where != _REMOVED

    def __repr__(self) -> str:
        return f"<AgingEntry {self.item!r} base={self.base} at={self.enqueued_at}>"


class AgingQueue(Generic[T]):
    """Priority queue with aging (see the module docs).

    Args:
        aging_rate: priority gained per second waited (>= 0).
        max_age_boost: the most priority aging can add (>= 0, may be ``inf``).
    """

    def __init__(self, aging_rate: float = 0.0, max_age_boost: float = math.inf) -> None:
        for name, value in (("aging_rate", aging_rate), ("max_age_boost", max_age_boost)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not value >= 0 or (name == "aging_rate" and value == math.inf):
                raise ValueError(f"{name} must be >= 0 (and finite for aging_rate), got {value}")
        self.aging_rate = float(aging_rate)
        self.max_age_boost = float(max_age_boost)
        self._seq = itertools.count()
        # Min-heaps of (negated key, seq, entry): the largest key on top, then FIFO.
        self._uncapped: list[tuple[float, int, AgingEntry[T]]] = []
        self._capped: list[tuple[float, int, AgingEntry[T]]] = []
        # Min-heap of (t_cap, seq, entry): who becomes capped next.
        self._cap_times: list[tuple[float, int, AgingEntry[T]]] = []
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def effective_priority(self, entry: AgingEntry[T], now: float) -> float:
        """Return ``entry``'s effective priority at ``now``."""
        if self.aging_rate == 0:
            return entry.base
        waited = max(0.0, now - entry.enqueued_at)
        return entry.base + min(self.aging_rate * waited, self.max_age_boost)

    def push(self, item: T, priority: float, now: float) -> AgingEntry[T]:
        """Queue ``item`` with base ``priority`` at time ``now``; return its entry."""
        entry = AgingEntry(item, priority, now, next(self._seq))
        rate = self.aging_rate
        if rate == 0:
            heapq.heappush(self._uncapped, (-priority, entry.seq, entry))
        else:
            heapq.heappush(self._uncapped, (-(priority - rate * now), entry.seq, entry))
            if self.max_age_boost != math.inf:
                cap_at = now + self.max_age_boost / rate
                heapq.heappush(self._cap_times, (cap_at, entry.seq, entry))
        self._live += 1
        return entry

    def remove(self, entry: AgingEntry[T]) -> None:
        """Take ``entry`` out of the queue (no-op if it is already out)."""
        if entry.where != _REMOVED:
            entry.where = _REMOVED
            self._live -= 1
            if len(self._uncapped) + len(self._capped) > 2 * self._live + 64:
                self._compact()

    def _compact(self) -> None:
        # Stale copies only leave a heap when they surface; drop them all at once
        # when they outnumber the live entries (O(n), amortised O(1) per removal).
        self._uncapped = [t for t in self._uncapped if t[2].where == _UNCAPPED]
        self._capped = [t for t in self._capped if t[2].where == _CAPPED]
        self._cap_times = [t for t in self._cap_times if t[2].where == _UNCAPPED]
        for heap in (self._uncapped, self._capped, self._cap_times):
            heapq.heapify(heap)

    def peek(self, now: float) -> AgingEntry[T] | None:
        """Return the entry with the highest effective priority at ``now``, or ``None``."""
        self._migrate(now)
        uncapped = self._top(self._uncapped, _UNCAPPED)
        capped = self._top(self._capped, _CAPPED)
        if uncapped is None:
            return None if capped is None else capped[2]
        if capped is None:
            return uncapped[2]
        u_key, u_seq, u_entry = uncapped
        c_key, c_seq, c_entry = capped
        u_eff = -u_key + self.aging_rate * now
        c_eff = -c_key
        if u_eff > c_eff or (u_eff == c_eff and u_seq < c_seq):
            return u_entry
        return c_entry

    def pop(self, now: float) -> AgingEntry[T] | None:
        """Remove and return the best entry at ``now``, or ``None`` if empty."""
        entry = self.peek(now)
        if entry is not None:
            self.remove(entry)
        return entry

    def _migrate(self, now: float) -> None:
        cap_times = self._cap_times
        boost = self.max_age_boost
        while cap_times and cap_times[0][0] <= now:
            _, seq, entry = heapq.heappop(cap_times)
            if entry.where == _UNCAPPED:
                entry.where = _CAPPED  # its copy in the uncapped heap is now stale
                heapq.heappush(self._capped, (-(entry.base + boost), seq, entry))

    @staticmethod
    def _top(
        heap: list[tuple[float, int, AgingEntry[T]]], where: int
    ) -> tuple[float, int, AgingEntry[T]] | None:
        while heap:
            top = heap[0]
            if top[2].where == where:
                return top
            heapq.heappop(heap)  # removed, or moved to the capped heap
        return None
