"""``RollingWindow``: count, sum, average, min and max of the last ``window`` seconds."""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque

from .._clock import Clock, resolve_clock
from .._util import check_seconds

__all__ = ["RollingWindow", "RollingWindowStats"]


@dataclasses.dataclass(frozen=True)
class RollingWindowStats:
    """What a :class:`RollingWindow` held at one moment.

    An empty window has ``count == 0``, ``sum == 0``, ``avg == 0`` and ``min`` and
    ``max`` ``None``.
    """

    window: float
    """The window's length in seconds."""
    count: int
    """Observations in the window."""
    sum: float
    """Their sum."""
    avg: float
    """Their mean (0 when empty)."""
    min: float | None
    """The smallest (``None`` when empty)."""
    max: float | None
    """The largest (``None`` when empty)."""

    @property
    def rate(self) -> float:
        """``sum`` per second over the window (events per second when each observes 1)."""
        return self.sum / self.window


class RollingWindow:
    """Observations of the last ``window`` seconds, with O(1) amortised upkeep.

    An observation made at ``t`` counts while ``now - window < t``. Old ones are
    dropped from the front of a deque as time moves on (on ``observe`` and on
    ``stats``), and min and max come from monotonic deques, so neither observing nor
    reading ever scans the window.

    Times are seconds of the window's clock (``at=`` / ``now=`` override it for one
    call). Observations must come in time order: an ``at`` earlier than the latest
    observation counts as made at the latest one.

    Example::

        latency = RollingWindow(60.0)
        latency.observe(0.2)
        latency.observe(0.4)
        latency.stats()     # RollingWindowStats(window=60.0, count=2, sum=0.6, avg=0.3,
                            #                    min=0.2, max=0.4)

    Args:
        window: the window's length in seconds (> 0).
        clock: where time is read; default :func:`time.monotonic`.

    Raises:
        ValueError: ``window`` is not > 0.
    """

    __slots__ = ("_clock", "_entries", "_last", "_maxs", "_mins", "_seq", "_sum", "_window")

    def __init__(self, window: float, *, clock: Clock | None = None) -> None:
        self._window: float = check_seconds("window", window, positive=True)
        self._clock = resolve_clock(clock)
        # Invariant: (at, value) in time order, every at > (latest now) - window once
        # evicted; _sum is the sum of their values (0.0 exactly when empty).
        self._entries: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        # Invariant: subsequences of _entries, values increasing (_mins) or
        # decreasing (_maxs) from the front: the front is the window's min (max).
        self._mins: deque[tuple[float, float]] = deque()
        self._maxs: deque[tuple[float, float]] = deque()
        self._last = -float("inf")
        # Observations ever made (never reset): the last entry is number _seq - 1.
        self._seq = 0

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._window

    def observe(self, value: float, at: float | None = None) -> None:
        """Record ``value`` at time ``at`` (seconds; default: now)."""
        if at is None:
            at = self._clock()
        if at < self._last:
            at = self._last
        self._last = at
        entry = (at, value)
        self._entries.append(entry)
        self._sum += value
        mins, maxs = self._mins, self._maxs
        while mins and mins[-1][1] >= value:
            mins.pop()
        mins.append(entry)
        while maxs and maxs[-1][1] <= value:
            maxs.pop()
        maxs.append(entry)
        self._seq += 1
        if self._entries[0][0] <= at - self._window:
            self._evict(at - self._window)

    def _evict(self, cutoff: float) -> None:
        entries = self._entries
        while entries and entries[0][0] <= cutoff:
            self._sum -= entries.popleft()[1]
        if not entries:
            self._sum = 0.0  # no float residue from the subtractions
        mins, maxs = self._mins, self._maxs
        while mins and mins[0][0] <= cutoff:
            mins.popleft()
        while maxs and maxs[0][0] <= cutoff:
            maxs.popleft()

    def stats(self, now: float | None = None) -> RollingWindowStats:
        """Return the window's statistics at ``now`` (seconds; default: the clock).

        Observations that fell out of the window are dropped for good, so a later
        call with an earlier ``now`` does not bring them back.
        """
        self._evict((self._clock() if now is None else now) - self._window)
        count = len(self._entries)
        if not count:
            return RollingWindowStats(self._window, 0, 0, 0, None, None)
        total = self._sum
        return RollingWindowStats(
            self._window, count, total, total / count, self._mins[0][1], self._maxs[0][1]
        )

    def reset(self) -> None:
        """Forget every observation."""
        self._entries.clear()
        self._mins.clear()
        self._maxs.clear()
        self._sum = 0.0

    def _since(self, cursor: int) -> tuple[int, list[float]]:
        """The values observed since ``cursor`` (an earlier return) still held, and
        the cursor to pass next time. For exporters that forward every value."""
        entries = self._entries
        fresh = min(max(0, self._seq - cursor), len(entries))
        values = [value for _, value in itertools.islice(entries, len(entries) - fresh, None)]
        return self._seq, values

    def __repr__(self) -> str:
        return f"<RollingWindow window={self._window} count={len(self._entries)}>"
