"""``Duration``: how long things took, over a rolling window."""

from __future__ import annotations

import math
from collections.abc import Callable

from .._clock import Clock, resolve_clock
from ._window import RollingWindow, RollingWindowStats

__all__ = ["Duration"]


class Duration:
    """Durations in seconds, kept for the last ``window`` seconds.

    Example::

        parse = Duration(60.0)
        stop = parse.start()
        ...                     # the work
        elapsed = stop()        # records the seconds since start() and returns them
        parse.record(0.25)      # or record a duration measured elsewhere
        parse.stats().max

    Args:
        window: seconds of history kept (> 0).
        clock: where time is read (for ``start`` and for the window); default
            :func:`time.monotonic`.
    """

    __slots__ = ("_clock", "_window")

    def __init__(self, window: float, *, clock: Clock | None = None) -> None:
        self._clock = resolve_clock(clock)
        self._window = RollingWindow(window, clock=self._clock)

    @property
    def window(self) -> float:
        """Seconds of history kept."""
        return self._window.window

    def record(self, seconds: float) -> None:
        """Record one duration, now.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._window.observe(seconds)

    def start(self) -> Callable[[], float]:
        """Start timing; return the function that stops it.

        Calling the stop function records the seconds elapsed since ``start()`` and
        returns them. Only the first call records; later calls return the same
        number again.
        """
        clock = self._clock
        began = clock()
        elapsed: float | None = None

        def stop() -> float:
            nonlocal elapsed
            if elapsed is None:
                now = clock()
                elapsed = max(0.0, now - began)
                self._window.observe(elapsed, now)
            return elapsed

        return stop

    def stats(self, now: float | None = None) -> RollingWindowStats:
        """Return the window's statistics at ``now`` (seconds; default: the clock)."""
        return self._window.stats(now)

    def reset(self) -> None:
        """Forget every recorded duration."""
        self._window.reset()

    def __repr__(self) -> str:
        return f"<Duration window={self.window} {self._window.stats()}>"
