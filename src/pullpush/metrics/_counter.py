"""``Counter`` and ``UpDown``: the two plain number metrics."""

from __future__ import annotations

import math

__all__ = ["Counter", "UpDown"]


class Counter:
    """A total that only grows (requests served, bytes read).

    Example::

        served = Counter()
        served.add()        # +1
        served.add(3)
        served.value        # 4
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        # Invariant: >= 0 and finite; only add() and reset() change it.
        self._value: float = 0

    @property
    def value(self) -> float:
        """The total so far."""
        return self._value

    def add(self, delta: float = 1) -> None:
        """Add ``delta`` (>= 0) to the total.

        Raises:
            ValueError: ``delta`` is negative or not finite (use :class:`UpDown` for
                values that go down).
        """
        if not delta >= 0 or delta == math.inf:
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        self._value += delta

    def reset(self) -> None:
        """Set the total back to 0."""
        self._value = 0

    def __repr__(self) -> str:
        return f"<Counter value={self._value}>"


class UpDown:
    """A level that goes up and down (items in flight, open connections).

    Example::

        in_flight = UpDown()
        in_flight.add(1)
        in_flight.add(-1)
        in_flight.value     # 0
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: float = 0

    @property
    def value(self) -> float:
        """The current level."""
        return self._value

    def add(self, delta: float) -> None:
        """Add ``delta`` (any sign) to the level.

        Raises:
            ValueError: ``delta`` is not finite.
        """
        if not math.isfinite(delta):
            raise ValueError(f"delta must be finite, got {delta!r}")
        self._value += delta

    def reset(self) -> None:
        """Set the level back to 0."""
        self._value = 0

    def __repr__(self) -> str:
        return f"<UpDown value={self._value}>"
