"""``QuotaCapacitySource``: budgets that are consumed, and refilled by time."""

from __future__ import annotations

from collections.abc import Callable

from .._clock import Clock
from .._util import check_seconds
from ._events import CapacityMetricsCollector
from ._resource import ResourceCapacitySource, ResourceCost, _valid
from ._timer import PeriodicTimer

__all__ = ["QuotaCapacitySource"]


class QuotaCapacitySource(ResourceCapacitySource):
    """A :class:`~pullpush.ResourceCapacitySource` whose budget is consumed, not lent.

    ``release()`` restores nothing at this level: only :meth:`reset` (a fixed
    window: "100 requests per minute"), :meth:`increment` (a token bucket: "10
    tokens per second up to 100") or :meth:`reconcile` (an over-estimate) give
    budget back. The periodic timers do that on the event loop::

        quota = QuotaCapacitySource({"requests": 100})
        quota.start_periodic_reset(60.0)          # every minute, refill to 100

    Layering a rate limit over a concurrency pool: make the quota the parent of a
    pool (``ResourceCapacitySource({"requests": 5}, parent=quota)``); releases
    restore the pool while the quota stays consumed.

    Differences from the original library, both deliberate:

    * ``release`` still checks that the cost was acquired
      (:class:`~pullpush.OverReleaseError` otherwise) and still passes the release
      on to the ancestors, so a pool *above* a quota gets its capacity back (the
      original stopped there and leaked it).
    * Lowering a limit clamps ``available`` at 0 (no debt: nothing is ever paid
      back by releases here).

    All other methods work as in the base class. Timers run on the event loop that
    was running when they were started; :meth:`stop_timer`, :meth:`close` or
    ``await aclose()`` stop them. :meth:`tick` runs one timer step synchronously,
    for deterministic tests.

    Args: as :class:`~pullpush.ResourceCapacitySource`.
    """

    _restores_on_release = False
    _allows_debt = False

    def __init__(
        self,
        limits: ResourceCost,
        parent: ResourceCapacitySource | None = None,
        metrics: CapacityMetricsCollector | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(limits, parent, metrics, clock=clock)
        # Invariant: at most one timer; _action is what it runs (None: no timer set).
        self._timer: PeriodicTimer | None = None
        self._action: Callable[[], None] | None = None

    @property
    def timer_running(self) -> bool:
        """Whether a periodic timer is running."""
        return self._timer is not None

    def start_periodic_reset(self, interval: float) -> None:
        """Call :meth:`reset` every ``interval`` seconds, replacing any running timer.

        Raises:
            ValueError: ``interval`` is not > 0.
            RuntimeError: no event loop is running.
        """
        check_seconds("interval", interval, positive=True)
        self._start(interval, self.reset)

    def start_periodic_increment(self, interval: float, amount: ResourceCost) -> None:
        """Call ``increment(amount)`` every ``interval`` seconds (capped at the limits),
        replacing any running timer.

        Raises:
            ValueError: ``interval`` is not > 0, or an amount is negative.
            RuntimeError: no event loop is running.
        """
        check_seconds("interval", interval, positive=True)
        amounts = _valid("amount", amount)
        self._start(interval, lambda: self.increment(amounts))

    def _start(self, interval: float, action: Callable[[], None]) -> None:
        self.stop_timer()
        self._timer = PeriodicTimer(interval, action)
        self._action = action

    def tick(self) -> None:
        """Run the running timer's step once now (``reset`` or ``increment``).

        Does nothing when no timer is running. For tests that drive time by hand.
        """
        if self._action is not None:
            self._action()

    def stop_timer(self) -> None:
        """Stop the periodic timer, if any (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._action = None

    def close(self) -> None:
        """Stop the timers (idempotent). The budget itself stays usable."""
        self.stop_timer()

    async def aclose(self) -> None:
        """Stop the timers (idempotent); ``await`` twin of :meth:`close`."""
        self.stop_timer()
