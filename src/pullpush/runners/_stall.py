"""A capacity that admits nothing: the dispatcher's capacity waits, and the warning
(``PoolRunner.stall_warning``) when one lasts while none of the runner's tasks runs."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..capacity import CapacitySource, ResourceCapacitySource

if TYPE_CHECKING:
    from ._task import Running


class _StallMixin:
    """The dispatcher's capacity waits, watched for a capacity that admits nothing."""

    if TYPE_CHECKING:  # what this room uses of the runner
        name: str
        stall_warning: float
        _running: dict[int, Running]
        _closing: bool
        _stall_warned: bool
        _waitables: bool

        async def _preemptible(self, acquire: Any, give_back: Callable[[Any], None]) -> Any: ...

    async def _acquire_capacity(
        self,
        acquire: Any,
        capacity: Any,
        cost: Any,
        give_back: Callable[[Any], None] | None = None,
    ) -> Any:
        """Await ``acquire`` (the capacity's acquire of ``cost``); if it waits for
        :attr:`stall_warning` seconds while nothing of this runner is in flight, warn.

        With ``give_back`` (the dispatcher's waits, in a run with waitable tasks), a
        resume queued meanwhile preempts the wait: what it acquired after all goes back
        through ``give_back(result)`` and :class:`_Preempted` is raised."""
        if give_back is not None and self._waitables:
            acquire = self._preemptible(acquire, give_back)
        if self._running or self._stall_warned:
            return await acquire
        timer = asyncio.get_running_loop().call_later(
            self.stall_warning, self._warn_stalled, capacity, cost
        )
        try:
            return await acquire
        finally:
            timer.cancel()

    def _warn_stalled(self, capacity: Any, cost: Any) -> None:
        if self._running or self._stall_warned or self._closing:
            return
        self._stall_warned = True
        why = _never_admits(capacity, cost)
        detail = (
            f": {why}, so no task can ever start unless that limit is raised"
            if why is not None
            else " (its units are all held elsewhere)"
        )
        warnings.warn(
            f"runner {self.name!r} has waited {self.stall_warning}s for capacity "
            f"{capacity!r} with no task running{detail}",
            RuntimeWarning,
            stacklevel=1,
        )


def _never_admits(capacity: Any, cost: Any) -> str | None:
    """Why ``cost`` can never be taken from ``capacity`` under its current limits (the
    first level of its chain that is too small), or ``None``."""
    for level, at_level in capacity._costs(cost):
        if isinstance(level, CapacitySource):
            if at_level > level.limit:
                return f"{level!r} has limit {level.limit}"
        elif isinstance(level, ResourceCapacitySource):
            limits = level.limits
            for key, amount in dict(at_level).items():
                if key in limits and amount > limits[key]:
                    return f"{level!r} allows {key}={limits[key]:g}, one task costs {amount:g}"
    return None
