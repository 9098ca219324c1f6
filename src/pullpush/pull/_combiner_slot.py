"""One source of an :class:`~pullpush.AsyncIteratorCombiner`: :class:`_Slot`, its
iterator, its pump's state and its outcomes the consumer has not taken yet."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from .._obj import pull_iter

_NO_FINAL: Any = object()

# How a source ended (_Slot.end).
_END, _ERROR = 1, 2


class _Slot:
    """One source: its iterator, its pump, and its outcomes the consumer has not taken."""

    __slots__ = (
        "drop_next",
        "end",
        "final",
        "index",
        "iterator",
        "permit",
        "pulling",
        "pump",
        "read_ahead",
        "values",
    )

    def __init__(self, index: int, source: AsyncIterable[Any], read_ahead: int) -> None:
        self.index = index
        self.iterator: AsyncIterator[Any] = pull_iter(source)
        self.read_ahead = read_ahead
        # Invariant: the slot is in the combiner's ready queue once per value here,
        # plus once for its end while that is not taken; values come out first.
        self.values: deque[Any] = deque()
        # Invariant: end is 0 until the pump delivered the end (_END; final: the
        # final value or _NO_FINAL) or an error (_ERROR; final: the exception).
        self.end = 0
        self.final: Any = None
        self.pump: asyncio.Task[None] | None = None
        # Invariant: permit is the future the pump is parked on (waiting for room),
        # until the consumer makes room and lets it go.
        self.permit: asyncio.Future[None] | None = None
        # Invariant: pulling while the pump runs and is not parked: whenever another
        # task looks, it is then in the middle of a pull (cancelling it then breaks
        # the source, as cancelling any await inside a generator does).
        self.pulling = False
        # Set by race(discard_round=True): drop the value of the pull in flight.
        self.drop_next = False

    @property
    def waiting(self) -> bool:
        """Whether an outcome of this source waits for the consumer."""
        return bool(self.values) or self.end != 0
