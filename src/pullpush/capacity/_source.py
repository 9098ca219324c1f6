"""``CapacitySource``: a hierarchical counter of units, one unit per task."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from .._clock import Clock, resolve_clock
from .._exceptions import AcquireTimeoutError
from .._sync import ParkingLot
from .._util import check_int, check_seconds
from ._core import CapacityLevel
from ._resource import ResourceCapacitySource, _valid
from ._result import TryAcquireResult

__all__ = ["CapacitySource", "CapacityStatistics"]


@dataclasses.dataclass(frozen=True)
class CapacityStatistics:
    """A snapshot of one :class:`CapacitySource` level."""

    limit: int
    """The most units this level lends at once."""
    available: int
    """Units free at this level (``max(0, limit - in_use)``)."""
    in_use: int
    """Units acquired at this level (here or by a descendant) and not yet released."""
    waiting: int
    """Acquires queued at this level."""
    oldest_wait: float
    """Seconds the longest-queued acquire at this level has waited (0.0: none)."""


class CapacitySource(CapacityLevel[int]):
    """Lend units of capacity, one per task, across a hierarchy of limits.

    ``await acquire()`` takes one unit at this source *and at every ancestor*, or
    waits until it can; ``release()`` gives it back at every level. Taking is atomic
    across the chain: a unit is taken at every level or at none. ::

        GLOBAL = CapacitySource(30)
        a = CapacitySource(14, parent=GLOBAL)   # a and b each use at most 14,
        b = CapacitySource(14, parent=GLOBAL)   # and together at most 30
        async with a:
            ...                                 # holds one unit of a and of GLOBAL

    Ordering and fairness: waiters at one source are served strictly first come,
    first served, and nobody barges past them (``try_acquire`` fails while any is
    queued). When a unit frees up at a shared ancestor, it goes to the
    longest-waiting acquire below it that can use it. When availability grows at any
    level (a release, ``set_limit``), the waiters of that level and of every level
    below it are served at once, in the same synchronous step.

    Cancellation: a cancelled ``acquire`` takes nothing, even when it is cancelled
    after its unit was granted but before it resumed (the unit is given back and
    goes to the next waiter).

    Releasing: ``release()`` without a matching acquire raises
    :class:`~pullpush.OverReleaseError` and changes nothing (the original library
    absorbed it silently, hiding accounting bugs).

    Lowering the limit with ``set_limit`` revokes nothing: the units in use stay in
    use, and ``available`` stays 0 until enough are released to go under the new
    limit.

    Under a resource parent: the parent may also be a
    :class:`~pullpush.ResourceCapacitySource` (e.g. a measured
    :class:`~pullpush.MemoryCapacitySource`); ``cost`` then says what one unit costs
    there, and each unit takes that cost at the parent and every level above it, in
    the same atomic step as the unit itself::

        memory = MemoryCapacitySource(reserve_mb=2048)
        pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
        # at most 8 tasks, and each admitted only while 500 MiB fit under the reserve

    Everything above (FIFO, atomicity, cancellation, wake-ups when the parent grows)
    holds across the two kinds of level.

    Args:
        limit: how many units this level lends at once (>= 0; 0 blocks every
            acquire until the limit is raised).
        parent: the next level up: a :class:`CapacitySource`, a
            :class:`~pullpush.ResourceCapacitySource`, or ``None`` for a root.
        cost: what one unit costs at a resource parent, e.g. ``{"memory_mb": 500}``
            (``{}``: nothing, the unit is held back only by a gate such as
            :class:`~pullpush.CpuCapacitySource`). Required with a resource parent,
            refused otherwise.
        clock: where time is read (``oldest_wait`` in :meth:`statistics`); default
            :func:`time.monotonic`.

    Raises:
        TypeError: ``parent`` is of another type, or ``cost`` is missing for a
            resource parent (or given without one).
        ValueError: ``limit`` is negative, or an amount of ``cost`` is negative or
            not finite.
    """

    def __init__(
        self,
        limit: int,
        parent: CapacitySource | ResourceCapacitySource | None = None,
        *,
        cost: Mapping[str, float] | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_int("limit", limit, minimum=0)
        bridge = None
        per_unit: dict[str, float] | None = None
        if isinstance(parent, ResourceCapacitySource):
            if cost is None:
                raise TypeError(
                    "cost= is required under a ResourceCapacitySource parent: what one unit "
                    "costs there, e.g. {'memory_mb': 500} ({} for nothing)"
                )
            per_unit = _valid("cost", cost)
            parent._warn_untracked(per_unit)
            bridge = _unit_cost(per_unit)
        elif parent is not None and not isinstance(parent, CapacitySource):
            raise TypeError(
                "parent must be a CapacitySource, a ResourceCapacitySource or None, "
                f"got {type(parent).__name__}"
            )
        elif cost is not None:
            raise TypeError("cost= is only for a ResourceCapacitySource parent")
        super().__init__(parent, resolve_clock(clock), bridge)
        # What one unit costs at the resource parent (None: no resource parent).
        self._unit_cost = per_unit
        self._limit = limit
        # Invariant: 0 <= _in_use; units taken at this level (by acquires here or below,
        # granted waiters included) and not yet released.
        self._in_use = 0
        # Whether every level of the chain is a plain CapacitySource (no resource parent,
        # no subclass): then acquire_nowait() and release() run the unit arithmetic
        # inline instead of the generic per-level calls. Fixed for life.
        self._unit_chain = all(type(level) is CapacitySource for level in self._chain)

    # -- one level ------------------------------------------------------------------------

    def _fits(self, cost: int) -> bool:
        return self._in_use + cost <= self._limit

    def _take(self, cost: int) -> None:
        self._in_use += cost

    def _refund(self, cost: int) -> None:
        self._in_use -= cost

    def _release_problem(self, cost: int) -> str | None:
        if cost > self._in_use:
            return f"release of {cost} unit(s) but only {self._in_use} in use"
        return None

    def _release(self, cost: int) -> None:
        self._in_use -= cost

    def _result(self) -> int:
        return self.available

    # -- state ----------------------------------------------------------------------------

    @property
    def parent(self) -> CapacitySource | ResourceCapacitySource | None:
        """The next level up, or ``None``."""
        return self._parent  # type: ignore[return-value]

    @property
    def cost(self) -> dict[str, float] | None:
        """What one unit costs at a resource parent (a copy), or ``None``."""
        return None if self._unit_cost is None else dict(self._unit_cost)

    @property
    def limit(self) -> int:
        """The most units this level lends at once."""
        return self._limit

    @property
    def available(self) -> int:
        """Units free at this level (ancestors may have fewer: see :meth:`peek`)."""
        return max(0, self._limit - self._in_use)

    @property
    def in_use(self) -> int:
        """Units acquired at this level and not yet released."""
        return self._in_use

    @property
    def max_capacity(self) -> int:
        """Alias of :attr:`limit` (FireFoundry's ``maxCapacity``)."""
        return self._limit

    @property
    def current_capacity(self) -> int:
        """Alias of :attr:`available` (FireFoundry's ``currentCapacity``)."""
        return self.available

    def statistics(self) -> CapacityStatistics:
        """Return this level's live numbers."""
        return CapacityStatistics(
            limit=self._limit,
            available=self.available,
            in_use=self._in_use,
            waiting=len(self._waiters),
            oldest_wait=self._oldest_wait(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<CapacitySource limit={s.limit} available={s.available} in_use={s.in_use} "
            f"waiting={s.waiting}>"
        )

    # -- acquiring ------------------------------------------------------------------------

    def peek(self) -> int | None:
        """Return :attr:`available` if a unit could be taken right now, else ``None``.

        "Could be taken" means: at this level and every ancestor, with nobody queued
        here (decision C10).
        """
        if self._waiters or not self._chain_fits(1):
            return None
        return self.available

    def try_acquire(self) -> TryAcquireResult[int]:
        """Take one unit at every level now if possible, without waiting.

        Returns:
            A result that is truthy exactly when the unit was taken; ``available`` is
            this level's count after taking it (or at the refusal).
        """
        if self._try_take(1):
            return TryAcquireResult(True, 1, self.available)
        return TryAcquireResult(False, 1, self.available, "insufficient_capacity")

    def acquire_nowait(self) -> bool:
        """Take one unit at every level now if possible; return whether it was taken.

        The cheap twin of :meth:`try_acquire` (no result object), for hot paths.
        """
        if not self._unit_chain:
            return self._try_take(1)
        # The same steps as _try_take(1) with every level a CapacitySource, inlined.
        if self._waiters:
            return False
        chain = self._chain
        for level in chain:
            if level._in_use >= level._limit:  # type: ignore[attr-defined]
                return False
        for level in chain:
            level._in_use += 1  # type: ignore[attr-defined]
        return True

    async def acquire(self, timeout: float | None = None) -> int:
        """Take one unit at this level and every ancestor, waiting until possible.

        Waiters are served first come, first served (see the class docs).

        Args:
            timeout: seconds to wait at most; ``None`` (default) waits forever.

        Returns:
            The units still available at this level after acquiring.

        Raises:
            AcquireTimeoutError: ``timeout`` passed first; nothing was taken.
        """
        if self._try_take(1):
            return self.available
        waiter = await self._wait(1, check_seconds("timeout", timeout, allow_none=True))
        if waiter.granted:
            return waiter.result  # type: ignore[no-any-return]
        raise AcquireTimeoutError(f"no unit of {self!r} within {timeout} s")

    async def _acquire_on(self, slot: ParkingLot) -> int | None:
        """Like :meth:`acquire`, but parked on ``slot``: ``slot.unpark_all()`` ends
        the wait and this returns ``None`` (nothing taken)."""
        if self._try_take(1):
            return self.available
        waiter = await self._wait(1, None, slot)
        return waiter.result if waiter.granted else None

    def release(self) -> None:
        """Give one unit back at this level and every ancestor; serve waiters.

        Raises:
            OverReleaseError: no unit is in use at some level; nothing changed.
        """
        if self._unit_chain:
            # The same steps as _chain_release(1) with every level a CapacitySource,
            # inlined; an over-release takes the generic path, which raises.
            chain = self._chain
            for level in chain:
                if not level._in_use:  # type: ignore[attr-defined]
                    break
            else:
                for level in chain:
                    level._in_use -= 1  # type: ignore[attr-defined]
                top = chain[-1]
                if top._queued or top._watchers is not None:
                    self._grown(top)
                return
        self._chain_release(1)

    def set_limit(self, limit: int) -> None:
        """Change this level's limit; raising it serves waiters at once.

        Lowering it revokes nothing (see the class docs).
        """
        check_int("limit", limit, minimum=0)
        grew = limit > self._limit
        self._limit = limit
        if grew:
            self._grown(self)

    async def __aenter__(self) -> CapacitySource:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _unit_cost(per_unit: dict[str, float]) -> Any:
    """The bridge from units to a resource parent's cost: ``units * per_unit``."""

    def to_resources(units: int) -> Mapping[str, float]:
        # One unit (every acquire and release) reuses the same mapping: levels only
        # read a cost, they never keep or change it.
        if units == 1:
            return per_unit
        return {key: amount * units for key, amount in per_unit.items()}

    return to_resources
