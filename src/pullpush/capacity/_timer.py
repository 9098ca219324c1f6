"""A periodic callback on the running event loop, for quota refills and the balancer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["PeriodicTimer"]


class PeriodicTimer:
    """Call ``action()`` every ``interval`` seconds of the event loop's clock.

    Fixed-rate: ticks are due at start + k * interval, so a slow tick does not push
    the next ones back; ticks missed while the loop was blocked are skipped, not
    replayed in a burst. Built on ``loop.call_at`` handles, not a task, so
    :meth:`cancel` is synchronous and immediate. An exception raised by ``action``
    goes to the loop's exception handler; the timer keeps running.

    Must be created with a running event loop.
    """

    __slots__ = ("_action", "_due", "_handle", "_interval", "_loop")

    def __init__(self, interval: float, action: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._interval = interval
        self._action = action
        self._due = self._loop.time() + interval
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._due, self._fire)

    @property
    def interval(self) -> float:
        """Seconds between ticks."""
        return self._interval

    @property
    def active(self) -> bool:
        """Whether the timer is still scheduled."""
        return self._handle is not None

    def cancel(self) -> None:
        """Stop the timer (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = self._loop.time()
        self._due += self._interval
        if self._due <= now:  # the loop was blocked past a tick: skip, do not burst
            self._due = now + self._interval
        # Reschedule before acting, so a failing action does not stop the timer.
        self._handle = self._loop.call_at(self._due, self._fire)
        self._action()
