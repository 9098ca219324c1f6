"""A clock that moves only when told to, for deterministic time-based tests."""

from __future__ import annotations

import math

__all__ = ["ManualClock"]


class ManualClock:
    """A clock (callable returning seconds) that moves only by :meth:`advance` / :meth:`set`.

    Pass it as ``clock=`` to anything in pullpush that reads time (aging priority
    sources, capacity metrics events, quota sources, the balancer).

    Example::

        clock = ManualClock()
        source = PrioritySourceObj(aging_rate=1.0, clock=clock)
        clock.advance(5.0)   # every queued item has now waited 5 s

    Args:
        start: the initial time in seconds.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = _check_time("start", start)

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now}>"

    @property
    def now(self) -> float:
        """The current time in seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0); return the new time.

        Raises:
            ValueError: ``seconds`` is negative or not finite (clocks never go back).
        """
        _check_time("seconds", seconds)
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0 (a clock never goes back), got {seconds}")
        self._now += seconds
        return self._now

    def set(self, t: float) -> None:
        """Set the time to ``t`` seconds, which must not be earlier than now.

        Raises:
            ValueError: ``t`` is before the current time, or not finite.
        """
        _check_time("t", t)
        if t < self._now:
            raise ValueError(f"t must be >= the current time {self._now} (a clock never goes back)")
        self._now = float(t)


def _check_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)
