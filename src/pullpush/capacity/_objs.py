"""Pull and push objects over a :class:`CapacitySource`: take a unit per pull, give
one back per push."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .._obj import PushObj, SourceObj
from .._sync import ParkingLot
from ._source import CapacitySource

__all__ = ["SinkCapacityObj", "SourceCapacityObj"]


def _check_capacity(capacity: object) -> CapacitySource:
    if not isinstance(capacity, CapacitySource):
        raise TypeError(f"capacity must be a CapacitySource, got {type(capacity).__name__}")
    return capacity


class SourceCapacityObj(SourceObj[int]):
    """Each pull waits for, takes and yields one unit of ``capacity``.

    The item yielded is what :meth:`CapacitySource.acquire` returns: the units still
    available at that level. Pair it with :class:`SinkCapacityObj` to give units
    back. Closing while a pull waits ends that pull without taking a unit; a unit
    granted at the same instant is still delivered (its consumer owns it).

    Args:
        capacity: where units are taken from (the field stays assignable; a new
            source applies to the next pull).
    """

    def __init__(self, capacity: CapacitySource) -> None:
        super().__init__()
        self.capacity = _check_capacity(capacity)
        self._slot = ParkingLot()

    def _interrupt(self) -> None:
        self._slot.unpark_all()

    def peek(self) -> int | None:
        """What the next pull would yield if it ran now, or ``None`` if it would wait."""
        return self.capacity.peek()

    async def pull_impl(self) -> AsyncGenerator[int, Any]:
        while not self._closing:
            units = await self.capacity._acquire_on(self._slot)
            if units is None:
                return  # interrupted by close()/aclose(): nothing was taken
            yield units


class SinkCapacityObj(PushObj[Any]):
    """Each value pushed gives one unit back to ``capacity`` (the value is ignored).

    Raises:
        OverReleaseError: from ``asend``, when no unit is in use.
    """

    def __init__(self, capacity: CapacitySource) -> None:
        super().__init__()
        self.capacity = _check_capacity(capacity)

    async def next_impl(self, value: Any) -> None:
        self.capacity.release()
