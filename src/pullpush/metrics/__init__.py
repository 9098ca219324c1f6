"""Metrics: primitives, collectors for capacity, chains and runners, and export.

* Primitives: :class:`Counter`, :class:`UpDown`, :class:`RollingWindow` (with
  :class:`RollingWindowStats`) and :class:`Duration`. All times are seconds.
* Collectors: :class:`DefaultCapacityMetricsCollector` (pass as ``metrics=`` to a
  capacity source), :class:`DefaultChainMetricsCollector` (turnstiles and sections
  placed in a pipeline), :class:`RunnerMetricsCollector` (pass as ``metrics=`` to a
  task pool runner). Each has ``snapshot(now=None)`` returning a frozen snapshot.
* Export: the :class:`MetricsSink` protocol, :class:`MetricsPump` (collectors to a
  sink on an interval), :class:`OpenTelemetrySink` (optional extra ``otel``) and
  :func:`render_prometheus`.

Every clock is injectable (``clock=``), so tests run on
:class:`pullpush.testing.ManualClock`.
"""

from ._capacity import CapacityMetricsSnapshot as CapacityMetricsSnapshot
from ._capacity import CapacityRates as CapacityRates
from ._capacity import CapacityTotals as CapacityTotals
from ._capacity import DefaultCapacityMetricsCollector as DefaultCapacityMetricsCollector
from ._chain import ChainMetricsSnapshot as ChainMetricsSnapshot
from ._chain import ChainSectionStatus as ChainSectionStatus
from ._chain import ChainToken as ChainToken
from ._chain import DefaultChainMetricsCollector as DefaultChainMetricsCollector
from ._chain import SectionSnapshot as SectionSnapshot
from ._chain import TurnstileSnapshot as TurnstileSnapshot
from ._counter import Counter as Counter
from ._counter import UpDown as UpDown
from ._duration import Duration as Duration
from ._otel import OpenTelemetrySink as OpenTelemetrySink
from ._points import MetricPoint as MetricPoint
from ._points import snapshot_points as snapshot_points
from ._prometheus import render_prometheus as render_prometheus
from ._pump import MetricsPump as MetricsPump
from ._runner_metrics import RunnerMetricsCollector as RunnerMetricsCollector
from ._runner_metrics import RunnerMetricsSnapshot as RunnerMetricsSnapshot
from ._sink import MetricAttrs as MetricAttrs
from ._sink import MetricsSink as MetricsSink
from ._sink import MetricsSnapshot as MetricsSnapshot
from ._window import RollingWindow as RollingWindow
from ._window import RollingWindowStats as RollingWindowStats

__all__ = (
    # primitives
    "Counter",
    "Duration",
    "RollingWindow",
    "RollingWindowStats",
    "UpDown",
    # capacity
    "CapacityMetricsSnapshot",
    "CapacityRates",
    "CapacityTotals",
    "DefaultCapacityMetricsCollector",
    # chain
    "ChainMetricsSnapshot",
    "ChainSectionStatus",
    "ChainToken",
    "DefaultChainMetricsCollector",
    "SectionSnapshot",
    "TurnstileSnapshot",
    # runner
    "RunnerMetricsCollector",
    "RunnerMetricsSnapshot",
    # export
    "MetricAttrs",
    "MetricPoint",
    "MetricsPump",
    "MetricsSink",
    "MetricsSnapshot",
    "OpenTelemetrySink",
    "render_prometheus",
    "snapshot_points",
)
