"""``ResourceCapacitySource``: multi-resource budgets, atomic and hierarchical."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any, TypeAlias

from .._clock import Clock, resolve_clock
from .._exceptions import (
    AcquireTimeoutError,
    InsufficientCapacityError,
    OverReleaseError,
    UntrackedResourceWarning,
)
from .._sync import WaitObject
from .._util import check_seconds
from ._core import CapacityLevel
from ._events import (
    AcquirePath,
    CapacityAcquireAcceptedEvent,
    CapacityAcquireRejectedEvent,
    CapacityIncrementEvent,
    CapacityMetricsCollector,
    CapacityReconcileEvent,
    CapacityReleaseEvent,
    CapacityResetEvent,
    CapacitySetLimitsEvent,
    emit,
)
from ._result import TryAcquireResult

__all__ = ["ResourceCapacitySource", "ResourceCapacityStatistics", "ResourceCost"]

ResourceCost: TypeAlias = Mapping[str, float]
"""Amounts per resource name, e.g. ``{"requests": 1, "tokens": 800}``."""

_TOL = 1e-9
"""Relative slack in comparisons, so float costs (0.1 + 0.2) do not strand capacity."""


_NOTHING: Mapping[str, float] = {}
"""The empty cost: fits at every level but a closed gate."""


def _exceeds(amount: float, bound: float) -> bool:
    """Whether ``amount > bound`` by more than float noise."""
    return amount > bound and amount > bound + _TOL * max(1.0, abs(amount))


def _amounts(name: str, value: object) -> dict[str, float]:
    """Copy a cost/limits mapping, raising ``TypeError`` (naming ``name``) on bad types."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a mapping of resource name to amount, got {type(value).__name__}"
        )
    out: dict[str, float] = {}
    for key, amount in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be resource names (str), got {key!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"{name}[{key!r}] must be a number, got {type(amount).__name__}")
        out[key] = amount
    return out


def _problem(name: str, amounts: Mapping[str, float]) -> str | None:
    """Describe the first negative or non-finite amount, or return ``None``."""
    for key, amount in amounts.items():
        if not (amount >= 0 and math.isfinite(amount)):
            return f"{name}[{key!r}] must be a finite number >= 0, got {amount!r}"
    return None


def _valid(name: str, value: object) -> dict[str, float]:
    amounts = _amounts(name, value)
    problem = _problem(name, amounts)
    if problem is not None:
        raise ValueError(problem)
    return amounts


@dataclasses.dataclass(frozen=True)
class ResourceCapacityStatistics:
    """A snapshot of one :class:`ResourceCapacitySource` level."""

    limits: Mapping[str, float]
    """The limit per resource."""
    available: Mapping[str, float]
    """What is free per resource at this level."""
    in_use: Mapping[str, float]
    """What is acquired (here or below) and not yet released, per resource."""
    utilization: Mapping[str, float]
    """``(limit - available) / limit`` per resource, in [0, 1]."""
    waiting: int
    """Acquires queued at this level."""
    oldest_wait: float
    """Seconds the longest-queued acquire at this level has waited (0.0: none)."""


class ResourceCapacitySource(CapacityLevel[ResourceCost]):
    """Budgets for several named resources, taken atomically across a hierarchy.

    A cost such as ``{"requests": 1, "tokens": 800}`` is taken at this source and at
    every ancestor, for every resource at once, or not at all. A level ignores the
    resources it does not track (they are still checked at the other levels); a
    resource that *no* level tracks is never limited, and the first cost naming it
    warns with :class:`~pullpush.UntrackedResourceWarning`.

    Acquire paths, all metered (decision C9):

    * ``can_acquire(cost)`` then ``acquire_immediate(cost)``: synchronous, atomic as
      long as nothing is awaited in between.
    * ``try_acquire(cost)``: check and take in one call; returns a
      :class:`~pullpush.TryAcquireResult`.
    * ``await acquire(cost, timeout=None)``: waits, first come first served.

    Ordering and fairness are those of :class:`~pullpush.CapacitySource`: strictly
    FIFO per source (a large cost at the head of the queue holds back smaller ones
    behind it; the synchronous paths fail while anyone is queued), and across sources
    that share an ancestor, freed room goes to the longest-waiting acquire that fits.
    A cost larger than a limit waits until the limit grows (limits are dynamic:
    balancers and measured capacity change them); check :meth:`validate_cost` or pass
    a ``timeout`` to avoid waiting forever.

    Accounting, which the original library left loose:

    * Releasing more than is in use raises :class:`~pullpush.OverReleaseError` and
      changes nothing.
    * Lowering a limit (``set_limits``) revokes nothing: work in flight over the new
      limit is a debt that releases pay back before anything new is admitted
      (``available`` reads 0 meanwhile).
    * Waiters and ``wait_obj`` watchers at this level *and below* are woken whenever
      availability grows here.

    Args:
        limits: the limit per resource (finite, >= 0), copied into ``available``.
        parent: the next level up, or ``None``.
        metrics: a :class:`~pullpush.CapacityMetricsCollector` to report to; one
            ``on_set_limits`` event is emitted at construction.
        clock: where event times are read; default :func:`time.monotonic`.

    Raises:
        ValueError: a limit is negative or not finite (the message names it).
    """

    _restores_on_release = True
    """Whether ``release`` puts the cost back into ``available`` at this level."""
    _allows_debt = True
    """Whether ``available`` may go below 0 (a debt that releases pay back)."""

    def __init__(
        self,
        limits: ResourceCost,
        parent: ResourceCapacitySource | None = None,
        metrics: CapacityMetricsCollector | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        initial = _valid("limits", limits)
        if parent is not None and not isinstance(parent, ResourceCapacitySource):
            raise TypeError(
                f"parent must be a ResourceCapacitySource or None, got {type(parent).__name__}"
            )
        super().__init__(parent, resolve_clock(clock))
        self._metrics = metrics
        self._limits: dict[str, float] = dict(initial)
        # Invariant: for a pool level (no reset/increment used), available == limit -
        # in_use per resource; it is below 0 only while a lowered limit or a
        # reconciled deficit is being paid back (never for a quota level).
        self._available: dict[str, float] = dict(initial)
        # Invariant: >= 0 per resource: acquired at this level and not yet released.
        self._in_use: dict[str, float] = dict.fromkeys(initial, 0)
        self._warned: set[str] = set()
        if metrics is not None:
            self._emit(
                "on_set_limits",
                CapacitySetLimitsEvent(self._clock(), {}, dict(initial), self.available),
            )

    # -- one level ------------------------------------------------------------------------

    def _fits(self, cost: ResourceCost) -> bool:
        available = self._available
        for key, amount in cost.items():
            have = available.get(key)
            if have is not None and amount > 0 and _exceeds(amount, have):
                return False
        return True

    def _take(self, cost: ResourceCost) -> None:
        available, in_use = self._available, self._in_use
        for key, amount in cost.items():
            if key in available:
                available[key] -= amount
                in_use[key] += amount

    def _refund(self, cost: ResourceCost) -> None:
        available, in_use, limits = self._available, self._in_use, self._limits
        for key, amount in cost.items():
            if key in available:
                available[key] = min(limits[key], available[key] + amount)
                in_use[key] = max(0, in_use[key] - amount)

    def _release_problem(self, cost: ResourceCost) -> str | None:
        in_use = self._in_use
        for key, amount in cost.items():
            if key in in_use and _exceeds(amount, in_use[key]):
                return f"release of {key!r}={amount} but only {in_use[key]} in use"
        return None

    def _release(self, cost: ResourceCost) -> None:
        available, in_use, limits = self._available, self._in_use, self._limits
        for key, amount in cost.items():
            if key in available:
                in_use[key] = max(0, in_use[key] - amount)
                if self._restores_on_release:
                    available[key] = min(limits[key], available[key] + amount)

    def _result(self) -> dict[str, float]:
        return self.available

    # -- helpers --------------------------------------------------------------------------

    def _emit(self, hook: str, event: object) -> None:
        if self._metrics is not None:
            emit(self._metrics, hook, event)

    def _accepted(self, cost: ResourceCost, path: AcquirePath) -> dict[str, float]:
        after = self.available
        if self._metrics is not None:
            self._emit(
                "on_acquire_accepted",
                CapacityAcquireAcceptedEvent(self._clock(), dict(cost), after, path),
            )
        return after

    def _warn_untracked(self, cost: ResourceCost, stacklevel: int = 3) -> None:
        limits, warned = self._limits, self._warned
        for key in cost:
            if key in limits or key in warned:  # the common cases, cheaply
                continue
            if any(key in level._limits for level in self._levels()):
                continue
            self._warned.add(key)
            warnings.warn(
                f"resource {key!r} is tracked by no level of {self!r}: it is not limited",
                UntrackedResourceWarning,
                stacklevel=stacklevel,
            )

    def _levels(self) -> tuple[ResourceCapacitySource, ...]:
        return self._chain  # type: ignore[return-value]

    def _cost(self, cost: object) -> dict[str, float]:
        """Validate a cost that must be valid (raise ``ValueError`` otherwise)."""
        amounts = _valid("cost", cost)
        self._warn_untracked(amounts, stacklevel=4)
        return amounts

    def _shortfall(self, cost: ResourceCost) -> str:
        if self._waiters:
            return f"{len(self._waiters)} acquire(s) are queued first at {self!r}"
        for level in self._levels():
            for key, amount in cost.items():
                have = level._available.get(key)
                if have is not None and amount > 0 and _exceeds(amount, have):
                    where = "" if level is self else " (ancestor)"
                    return f"{key!r}: need {amount}, {max(0, have)} available at {level!r}{where}"
        return "no shortfall"  # pragma: no cover - only called after a failed check

    # -- state ----------------------------------------------------------------------------

    @property
    def parent(self) -> ResourceCapacitySource | None:
        """The next level up, or ``None``."""
        return self._parent  # type: ignore[return-value]

    @property
    def limits(self) -> dict[str, float]:
        """The limit per resource (a copy)."""
        return dict(self._limits)

    @property
    def available(self) -> dict[str, float]:
        """What is free per resource at this level (a copy; never below 0)."""
        return {key: max(0, amount) for key, amount in self._available.items()}

    @property
    def in_use(self) -> dict[str, float]:
        """What is acquired and not yet released per resource at this level (a copy)."""
        return dict(self._in_use)

    @property
    def utilization(self) -> dict[str, float]:
        """``(limit - available) / limit`` per resource, in [0, 1]; 0 for a limit of 0."""
        out: dict[str, float] = {}
        for key, limit in self._limits.items():
            if limit <= 0:
                out[key] = 0.0
            else:
                used = (limit - max(0, self._available[key])) / limit
                out[key] = min(1.0, max(0.0, used))
        return out

    @property
    def wait_obj(self) -> WaitObject[bool]:
        """A signal resolved with ``True`` whenever availability may have grown here.

        Resolved by ``release``, ``set_limits``, ``reset``, ``increment`` and
        ``reconcile`` on this source, and by the same operations on any ancestor
        (so a level held back by its parent is woken too). Coalescing: see
        :class:`~pullpush.WaitObject`. Re-check ``can_acquire`` after each wake.
        """
        return self._get_wait_obj()

    def statistics(self) -> ResourceCapacityStatistics:
        """Return this level's live numbers."""
        return ResourceCapacityStatistics(
            limits=self.limits,
            available=self.available,
            in_use=self.in_use,
            utilization=self.utilization,
            waiting=len(self._waiters),
            oldest_wait=self._oldest_wait(),
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} limits={self._limits} available={self.available} "
            f"waiting={len(self._waiters)}>"
        )

    def peek(self) -> dict[str, float] | None:
        """Return the budget that could be taken now, or ``None`` if some resource has none.

        The budget is, per resource tracked at any level of the chain, the least
        available at any level. ``None`` also while acquires are queued here (they
        are served first), and while a gate of the chain (such as a closed
        :class:`~pullpush.CpuCapacitySource`) admits nothing.
        """
        if self._waiters or not self._chain_fits(_NOTHING):
            return None
        budget: dict[str, float] = {}
        for level in self._levels():
            for key, amount in level._available.items():
                budget[key] = min(budget.get(key, math.inf), max(0, amount))
        if any(amount <= 0 for amount in budget.values()):
            return None
        return budget

    def validate_cost(self, cost: ResourceCost) -> bool:
        """Return whether ``cost`` could ever be taken under the current limits.

        False when some amount is negative or exceeds a resource's limit at any level
        of the chain. Meant for rejecting impossible tasks when they are enqueued.
        """
        amounts = _amounts("cost", cost)
        if _problem("cost", amounts) is not None:
            return False
        self._warn_untracked(amounts)
        for level in self._levels():
            limits = level._limits
            for key, amount in amounts.items():
                if key in limits and _exceeds(amount, limits[key]):
                    return False
        return True

    # -- acquiring ------------------------------------------------------------------------

    def can_acquire(self, cost: ResourceCost) -> bool:
        """Return whether ``cost`` could be taken right now, at every level.

        False for negative or non-finite amounts, and while acquires are queued here.
        Advisory: it takes nothing and emits no event.
        """
        amounts = _amounts("cost", cost)
        if _problem("cost", amounts) is not None:
            return False
        self._warn_untracked(amounts)
        return not self._waiters and self._chain_fits(amounts)

    def acquire_immediate(self, cost: ResourceCost) -> None:
        """Take ``cost`` at every level now; call it right after ``can_acquire`` said yes.

        Raises:
            InsufficientCapacityError: the cost does not fit now (or acquires are
                queued here); nothing was taken.
            ValueError: an amount is negative or not finite.
        """
        amounts = self._cost(cost)
        if not self._try_take(amounts):
            raise InsufficientCapacityError(
                f"acquire_immediate({amounts}) on {self!r}: {self._shortfall(amounts)}"
            )
        self._accepted(amounts, "acquire_immediate")

    def try_acquire(self, cost: ResourceCost) -> TryAcquireResult[dict[str, float]]:
        """Take ``cost`` at every level if it fits now; never wait.

        Returns:
            A result that is truthy exactly when the cost was taken. A refusal
            (reason ``"insufficient_capacity"``, or ``"invalid_cost"`` for a negative
            or non-finite amount) changes nothing and emits a rejected event.
        """
        amounts = _amounts("cost", cost)
        reason: Any = None
        if _problem("cost", amounts) is not None:
            reason = "invalid_cost"
        else:
            self._warn_untracked(amounts)
            if self._try_take(amounts):
                return TryAcquireResult(True, amounts, self._accepted(amounts, "try_acquire"))
            reason = "insufficient_capacity"
        available = self.available
        if self._metrics is not None:
            self._emit(
                "on_acquire_rejected",
                CapacityAcquireRejectedEvent(self._clock(), amounts, available, reason),
            )
        return TryAcquireResult(False, amounts, available, reason)

    async def acquire(self, cost: ResourceCost, timeout: float | None = None) -> dict[str, float]:
        """Take ``cost`` at every level, waiting until it fits.

        Waiters are served first come, first served (see the class docs).
        Cancelling the call takes nothing, even if the cost had just been granted.

        Args:
            cost: the amount per resource.
            timeout: seconds to wait at most; ``None`` (default) waits forever.

        Returns:
            This source's available budget right after taking the cost.

        Raises:
            AcquireTimeoutError: ``timeout`` passed first; nothing was taken.
            ValueError: an amount is negative or not finite.
        """
        amounts = self._cost(cost)
        timeout = check_seconds("timeout", timeout, allow_none=True)
        if self._try_take(amounts):
            return self._accepted(amounts, "acquire")
        waiter = await self._wait(amounts, timeout)
        if not waiter.granted:
            raise AcquireTimeoutError(f"{amounts} not available from {self!r} within {timeout} s")
        if self._metrics is not None:
            self._emit(
                "on_acquire_accepted",
                CapacityAcquireAcceptedEvent(self._clock(), amounts, waiter.result, "acquire"),
            )
        return waiter.result  # type: ignore[no-any-return]

    # -- giving back and changing the books -------------------------------------------------

    def release(self, cost: ResourceCost) -> None:
        """Give ``cost`` back at this level and every ancestor; serve waiters.

        Raises:
            OverReleaseError: more than is in use at some level; nothing changed.
            ValueError: an amount is negative or not finite.
        """
        amounts = self._cost(cost)
        self._chain_release(amounts)
        if self._metrics is not None:
            self._emit("on_release", CapacityReleaseEvent(self._clock(), amounts, self.available))

    def reset(self, limits: ResourceCost | None = None) -> None:
        """Refill ``available`` to the limits (after ``set_limits(limits)`` if given).

        In-use amounts are kept, so later releases still check against them.
        """
        if limits is not None:
            self.set_limits(limits)
        self._available = dict(self._limits)
        if self._metrics is not None:
            self._emit("on_reset", CapacityResetEvent(self._clock(), self.limits, self.available))
        self._grown(self)

    def increment(self, amount: ResourceCost, cap: ResourceCost | None = None) -> None:
        """Add to ``available`` without changing the limits (a token-bucket refill).

        Each resource is capped at ``cap`` (default: its limit); one already above
        its cap is left as it is. Resources this level does not track are ignored.

        Raises:
            ValueError: an amount or cap is negative or not finite.
        """
        amounts = _valid("amount", amount)
        caps = None if cap is None else _valid("cap", cap)
        available = self._available
        for key, add in amounts.items():
            if key not in available:
                continue
            ceiling = self._limits[key] if caps is None else caps.get(key, self._limits[key])
            if available[key] < ceiling:
                available[key] = min(ceiling, available[key] + add)
        if self._metrics is not None:
            self._emit(
                "on_increment",
                CapacityIncrementEvent(self._clock(), amounts, caps, self.available),
            )
        self._grown(self)

    def set_limits(self, limits: ResourceCost) -> None:
        """Change some limits (a partial update; new resources may be added).

        Raising a limit adds the difference to ``available`` and serves waiters.
        Lowering it takes the difference away; in-flight work is not revoked (see
        the class docs: a debt on a pool, clamped at 0 on a quota).

        Raises:
            ValueError: a limit is negative or not finite; nothing changed.
        """
        new = _valid("limits", limits)
        before = dict(self._limits)
        available, in_use = self._available, self._in_use
        for key, limit in new.items():
            if key in self._limits:
                available[key] += limit - self._limits[key]
                if not self._allows_debt and available[key] < 0:
                    available[key] = 0
            else:
                available[key] = limit
                in_use[key] = 0
            self._limits[key] = limit
        if self._metrics is not None:
            self._emit(
                "on_set_limits",
                CapacitySetLimitsEvent(self._clock(), before, self.limits, self.available),
            )
        self._grown(self)

    def reconcile(self, estimated: ResourceCost, actual: ResourceCost) -> None:
        """Correct the books once real usage is known, at this level and every ancestor.

        An estimate that was too high gives the surplus back (capped at the
        limits); one too low takes the deficit (a debt on a pool, clamped at 0 on a
        quota). Afterwards release ``actual``, not the estimate.

        Raises:
            OverReleaseError: the correction would make some in-use amount negative
                (``estimated`` was not acquired); nothing changed.
            ValueError: an amount is negative or not finite.
        """
        est = self._cost(estimated)
        act = _valid("actual", actual)
        delta = {key: act.get(key, 0) - est.get(key, 0) for key in {**est, **act}}
        levels = self._levels()
        for level in levels:
            for key, change in delta.items():
                if key in level._in_use and _exceeds(-change, level._in_use[key]):
                    raise OverReleaseError(
                        f"reconcile({est}, {act}) would give back more {key!r} than is in use "
                        f"at {level!r}; nothing changed"
                    )
        for level in levels:
            available, in_use, limits = level._available, level._in_use, level._limits
            for key, change in delta.items():
                if key not in available:
                    continue
                in_use[key] = max(0, in_use[key] + change)
                if change < 0:
                    available[key] = min(limits[key], available[key] - change)
                else:
                    available[key] -= change
                    if not level._allows_debt and available[key] < 0:
                        available[key] = 0
        if self._metrics is not None and hasattr(self._metrics, "on_reconcile"):
            self._emit(
                "on_reconcile", CapacityReconcileEvent(self._clock(), est, act, self.available)
            )
        self._grown(self._chain[-1])
