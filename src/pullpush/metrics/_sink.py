"""The export side: ``MetricsSink`` (where numbers go) and ``MetricsSnapshot``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol, TypeAlias, runtime_checkable

from ._capacity import CapacityMetricsSnapshot
from ._chain import ChainMetricsSnapshot
from ._runner_metrics import RunnerMetricsSnapshot

__all__ = ["MetricAttrs", "MetricsSink", "MetricsSnapshot"]

MetricAttrs: TypeAlias = Mapping[str, "str | int | float | bool"]
"""Attributes (labels) of one metric point, e.g. ``{"resource": "memory_mb"}``."""


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot:
    """Everything a :class:`~pullpush.metrics.MetricsPump` read in one tick.

    Each mapping goes from the name the pump knows a collector by to that
    collector's snapshot; snapshots of other collectors land in ``other``.
    """

    captured_at: float
    """When, in seconds of the pump's clock."""
    capacity: Mapping[str, CapacityMetricsSnapshot] = dataclasses.field(default_factory=dict)
    chain: Mapping[str, ChainMetricsSnapshot] = dataclasses.field(default_factory=dict)
    runner: Mapping[str, RunnerMetricsSnapshot] = dataclasses.field(default_factory=dict)
    other: Mapping[str, object] = dataclasses.field(default_factory=dict)


@runtime_checkable
class MetricsSink(Protocol):
    """Where metrics go: a backend adapter (OpenTelemetry, StatsD, logs...).

    Each method may be a plain function or a coroutine function. Calls are
    fire-and-forget for the library: whatever a sink raises is logged and ignored
    (logger ``pullpush.metrics``), and nothing in pullpush waits for a sink except
    the pump's own task.

    Two more methods are optional: ``snapshot(snap: MetricsSnapshot)``, called with
    the whole snapshot once per pump tick before the points, and ``flush()``,
    called after them.
    """

    def counter(self, name: str, delta: float, attrs: MetricAttrs | None = None) -> object:
        """Add ``delta`` (>= 0) to the counter ``name``."""

    def gauge(self, name: str, value: float, attrs: MetricAttrs | None = None) -> object:
        """Set the gauge ``name`` to ``value``."""

    def duration(self, name: str, seconds: float, attrs: MetricAttrs | None = None) -> object:
        """Record one duration of ``seconds`` under ``name`` (a histogram)."""
