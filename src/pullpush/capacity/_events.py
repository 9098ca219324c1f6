"""Capacity metrics: the events a capacity source emits, and the collector protocol.

A :class:`~pullpush.ResourceCapacitySource` given ``metrics=collector`` calls one hook
of the collector per operation made on it, synchronously, with a frozen event
(decision C9: every acquire path is metered, not only ``try_acquire``):

========================  ========================================================
hook                      emitted by
========================  ========================================================
``on_acquire_accepted``   ``try_acquire``, ``acquire_immediate`` and an awaited
                          ``acquire`` that got its cost (``path`` says which)
``on_acquire_rejected``   ``try_acquire`` only (``reason``: ``insufficient_capacity``
                          or ``invalid_cost``)
``on_release``            ``release`` (also on a quota source, where it restores
                          nothing)
``on_reset``              ``reset``
``on_increment``          ``increment``
``on_set_limits``         ``set_limits``, ``reset(limits)``, and once at construction
``on_reconcile``          ``reconcile`` (optional: called only when the collector
                          has it, so collectors written before it still conform)
========================  ========================================================

Emitting is fire-and-forget: an exception raised by a hook is logged (logger
``pullpush.capacity``) and otherwise ignored, so a broken collector never breaks
capacity accounting. Each source emits for the calls made on it; a child's acquire
is one event on the child's collector, not one per level.

Every event carries ``at``: seconds read from the source's clock.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "AcquirePath",
    "CapacityAcquireAcceptedEvent",
    "CapacityAcquireRejectedEvent",
    "CapacityIncrementEvent",
    "CapacityMetricsCollector",
    "CapacityReconcileEvent",
    "CapacityReleaseEvent",
    "CapacityResetEvent",
    "CapacitySetLimitsEvent",
    "TryAcquireRejectReason",
    "emit",
]

_log = logging.getLogger("pullpush.capacity")

AcquirePath = Literal["try_acquire", "acquire_immediate", "acquire"]
"""Which acquire method took the cost."""

TryAcquireRejectReason = Literal["insufficient_capacity", "invalid_cost"]
"""Why ``try_acquire`` refused: not enough now, or a negative / non-finite amount."""


@dataclasses.dataclass(frozen=True)
class CapacityAcquireAcceptedEvent:
    """A cost was taken."""

    at: float
    """When, in seconds of the source's clock."""
    requested: Mapping[str, float]
    """The cost taken."""
    available_after: Mapping[str, float]
    """This source's available budget right after taking it."""
    path: AcquirePath
    """The method that took it."""


@dataclasses.dataclass(frozen=True)
class CapacityAcquireRejectedEvent:
    """``try_acquire`` refused a cost; nothing changed."""

    at: float
    """When, in seconds of the source's clock."""
    requested: Mapping[str, float]
    """The cost asked for."""
    available: Mapping[str, float]
    """This source's available budget at the time."""
    reason: TryAcquireRejectReason
    """Why it was refused."""


@dataclasses.dataclass(frozen=True)
class CapacityReleaseEvent:
    """A cost was released (on a quota source, restoring nothing at that level)."""

    at: float
    """When, in seconds of the source's clock."""
    released: Mapping[str, float]
    """The cost given back."""
    available_after: Mapping[str, float]
    """This source's available budget afterwards."""


@dataclasses.dataclass(frozen=True)
class CapacityResetEvent:
    """Available was refilled to the limits."""

    at: float
    """When, in seconds of the source's clock."""
    limits: Mapping[str, float]
    """The limits refilled to."""
    available_after: Mapping[str, float]
    """This source's available budget afterwards (equal to ``limits``)."""


@dataclasses.dataclass(frozen=True)
class CapacityIncrementEvent:
    """Available was topped up without changing the limits."""

    at: float
    """When, in seconds of the source's clock."""
    amount: Mapping[str, float]
    """The amounts added (before capping)."""
    cap: Mapping[str, float] | None
    """The caps given, or ``None`` for the limits."""
    available_after: Mapping[str, float]
    """This source's available budget afterwards."""


@dataclasses.dataclass(frozen=True)
class CapacitySetLimitsEvent:
    """The limits changed (or were set, at construction)."""

    at: float
    """When, in seconds of the source's clock."""
    limits_before: Mapping[str, float]
    """The limits before (empty at construction)."""
    limits_after: Mapping[str, float]
    """The limits after."""
    available_after: Mapping[str, float]
    """This source's available budget afterwards."""


@dataclasses.dataclass(frozen=True)
class CapacityReconcileEvent:
    """An estimate was corrected with the measured use (``reconcile``)."""

    at: float
    """When, in seconds of the source's clock."""
    estimated: Mapping[str, float]
    """The cost that had been acquired."""
    actual: Mapping[str, float]
    """The cost measured; in use now moves by ``actual - estimated``."""
    available_after: Mapping[str, float]
    """This source's available budget afterwards."""


@runtime_checkable
class CapacityMetricsCollector(Protocol):
    """What a capacity source reports to: one hook per event, plus ``snapshot``.

    Hooks are called synchronously from inside capacity operations: keep them cheap
    and never ``await`` in them. What ``snapshot`` returns is the collector's
    business (the metrics subsystem defines a snapshot type).

    One more hook is optional, so that it is not part of this protocol's required
    members: ``on_reconcile(event: CapacityReconcileEvent)``, called by
    ``reconcile`` when the collector defines it.
    """

    def on_acquire_accepted(self, event: CapacityAcquireAcceptedEvent) -> None:
        """A cost was taken (any acquire path)."""

    def on_acquire_rejected(self, event: CapacityAcquireRejectedEvent) -> None:
        """``try_acquire`` refused a cost."""

    def on_release(self, event: CapacityReleaseEvent) -> None:
        """A cost was released."""

    def on_reset(self, event: CapacityResetEvent) -> None:
        """Available was refilled."""

    def on_increment(self, event: CapacityIncrementEvent) -> None:
        """Available was topped up."""

    def on_set_limits(self, event: CapacitySetLimitsEvent) -> None:
        """The limits changed."""

    def snapshot(self, now: float | None = None) -> object:
        """Return the collector's view at ``now`` (seconds; ``None``: the current time)."""


def emit(collector: CapacityMetricsCollector, hook: str, event: object) -> None:
    """Call ``collector.<hook>(event)``, logging and swallowing whatever it raises."""
    try:
        getattr(collector, hook)(event)
    except Exception:
        # Fire-and-forget: a failing collector must not break capacity accounting.
        _log.exception("capacity metrics collector %r failed in %s", collector, hook)
