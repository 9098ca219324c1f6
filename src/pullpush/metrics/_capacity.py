"""``DefaultCapacityMetricsCollector``: what a capacity source did, as totals and rates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .._clock import Clock, resolve_clock
from ..capacity import (
    CapacityAcquireAcceptedEvent,
    CapacityAcquireRejectedEvent,
    CapacityIncrementEvent,
    CapacityReconcileEvent,
    CapacityReleaseEvent,
    CapacityResetEvent,
    CapacitySetLimitsEvent,
)
from ._window import RollingWindow, RollingWindowStats

__all__ = [
    "CapacityMetricsSnapshot",
    "CapacityRates",
    "CapacityTotals",
    "DefaultCapacityMetricsCollector",
]


@dataclasses.dataclass(frozen=True)
class CapacityTotals:
    """How many events of each kind a collector has seen."""

    acquire_accepted: int
    acquire_rejected: int
    release: int
    reset: int
    increment: int
    set_limits: int
    reconcile: int


@dataclasses.dataclass(frozen=True)
class CapacityRates:
    """Events in the last window (each event observes 1: ``.count``, ``.rate`` per second)."""

    acquire_accepted_per_sec: RollingWindowStats
    acquire_rejected_per_sec: RollingWindowStats
    release_per_sec: RollingWindowStats


@dataclasses.dataclass(frozen=True)
class CapacityMetricsSnapshot:
    """A :class:`DefaultCapacityMetricsCollector`'s view at one moment."""

    captured_at: float
    """When, in seconds of the collector's clock."""
    totals: CapacityTotals
    """Events seen, per kind."""
    in_flight_by_resource: Mapping[str, float]
    """Acquired minus released (plus ``actual - estimated`` of reconciles), per resource."""
    requested_rejected_by_resource: Mapping[str, float]
    """Amounts asked for by ``try_acquire`` calls refused for lack of capacity (not
    for an invalid cost), per resource."""
    utilization_by_resource: Mapping[str, float]
    """``(limit - available) / limit`` after the latest event, per tracked resource."""
    rates: CapacityRates
    """Accepted, rejected and release events in the last window."""


class DefaultCapacityMetricsCollector:
    """Count what a capacity source does; pass it as ``metrics=`` to the source.

    It implements :class:`~pullpush.CapacityMetricsCollector` (and the optional
    ``on_reconcile`` hook). Every acquire path is counted (decision C9), so a runner's
    ``can_acquire`` + ``acquire_immediate`` shows up in ``acquire_accepted``::

        collector = DefaultCapacityMetricsCollector()
        capacity = ResourceCapacitySource({"requests": 4}, metrics=collector)
        ...
        snap = collector.snapshot()
        snap.totals.acquire_accepted, snap.in_flight_by_resource["requests"]

    Use one collector per source: the events do not say which source sent them, so
    the in-flight amounts and the utilisation of several sources would mix. Give the
    collector the source's clock (the rates are kept at the events' times and read at
    the collector's).

    Args:
        window: seconds over which the rates are kept (> 0).
        clock: where ``snapshot()`` reads the time; default :func:`time.monotonic`.
    """

    def __init__(self, window: float = 60.0, clock: Clock | None = None) -> None:
        self._clock = resolve_clock(clock)
        self._accepted_rate = RollingWindow(window, clock=self._clock)
        self._rejected_rate = RollingWindow(window, clock=self._clock)
        self._release_rate = RollingWindow(window, clock=self._clock)
        self._init_counts()

    def _init_counts(self) -> None:
        self._accepted = self._rejected = self._released = 0
        self._resets = self._increments = self._set_limits = self._reconciles = 0
        self._in_flight: dict[str, float] = {}
        self._requested_rejected: dict[str, float] = {}
        # The limits and the available budget after the latest event that told them.
        self._limits: dict[str, float] = {}
        self._available: dict[str, float] = {}

    # -- the CapacityMetricsCollector hooks ---------------------------------------------

    def on_acquire_accepted(self, event: CapacityAcquireAcceptedEvent) -> None:
        """Count an accepted acquire (any path)."""
        self._accepted += 1
        in_flight = self._in_flight
        for key, amount in event.requested.items():
            in_flight[key] = in_flight.get(key, 0) + amount
        self._available = dict(event.available_after)
        self._accepted_rate.observe(1, event.at)

    def on_acquire_rejected(self, event: CapacityAcquireRejectedEvent) -> None:
        """Count a refused ``try_acquire``."""
        self._rejected += 1
        if event.reason == "insufficient_capacity":
            rejected = self._requested_rejected
            for key, amount in event.requested.items():
                rejected[key] = rejected.get(key, 0) + amount
        self._rejected_rate.observe(1, event.at)

    def on_release(self, event: CapacityReleaseEvent) -> None:
        """Count a release."""
        self._released += 1
        in_flight = self._in_flight
        for key, amount in event.released.items():
            in_flight[key] = in_flight.get(key, 0) - amount
        self._available = dict(event.available_after)
        self._release_rate.observe(1, event.at)

    def on_reset(self, event: CapacityResetEvent) -> None:
        """Count a refill."""
        self._resets += 1
        self._limits = dict(event.limits)
        self._available = dict(event.available_after)

    def on_increment(self, event: CapacityIncrementEvent) -> None:
        """Count a top-up."""
        self._increments += 1
        self._available = dict(event.available_after)

    def on_set_limits(self, event: CapacitySetLimitsEvent) -> None:
        """Count a limits change (one comes at the source's construction)."""
        self._set_limits += 1
        self._limits = dict(event.limits_after)
        self._available = dict(event.available_after)

    def on_reconcile(self, event: CapacityReconcileEvent) -> None:
        """Count a reconcile; in flight moves by ``actual - estimated``."""
        self._reconciles += 1
        in_flight = self._in_flight
        for key in {**event.estimated, **event.actual}:
            change = event.actual.get(key, 0) - event.estimated.get(key, 0)
            in_flight[key] = in_flight.get(key, 0) + change
        self._available = dict(event.available_after)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> CapacityMetricsSnapshot:
        """Return the totals, in-flight amounts, utilisation and rates at ``now``."""
        now = self._clock() if now is None else now
        utilization: dict[str, float] = {}
        for key, limit in self._limits.items():
            if limit <= 0:
                utilization[key] = 0.0
            else:
                used = (limit - self._available.get(key, limit)) / limit
                utilization[key] = min(1.0, max(0.0, used))
        return CapacityMetricsSnapshot(
            captured_at=now,
            totals=CapacityTotals(
                acquire_accepted=self._accepted,
                acquire_rejected=self._rejected,
                release=self._released,
                reset=self._resets,
                increment=self._increments,
                set_limits=self._set_limits,
                reconcile=self._reconciles,
            ),
            in_flight_by_resource=dict(self._in_flight),
            requested_rejected_by_resource=dict(self._requested_rejected),
            utilization_by_resource=utilization,
            rates=CapacityRates(
                acquire_accepted_per_sec=self._accepted_rate.stats(now),
                acquire_rejected_per_sec=self._rejected_rate.stats(now),
                release_per_sec=self._release_rate.stats(now),
            ),
        )

    def reset(self) -> None:
        """Forget everything seen (the limits come back with the next event)."""
        self._init_counts()
        self._accepted_rate.reset()
        self._rejected_rate.reset()
        self._release_rate.reset()

    def __repr__(self) -> str:
        return (
            f"<DefaultCapacityMetricsCollector accepted={self._accepted} "
            f"rejected={self._rejected} released={self._released}>"
        )
