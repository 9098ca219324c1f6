"""``OpenTelemetrySink``: a ``MetricsSink`` that records into OpenTelemetry instruments.

Needs the optional extra: ``pip install 'pullpush[otel]'`` (``opentelemetry-api``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._sink import MetricAttrs

__all__ = ["OpenTelemetrySink"]

_MISSING = (
    "OpenTelemetrySink needs the OpenTelemetry API: pip install 'pullpush[otel]' "
    "(or opentelemetry-api>=1.20)"
)


def _otel_metrics() -> Any:
    try:
        return importlib.import_module("opentelemetry.metrics")
    except ImportError as error:
        raise ImportError(_MISSING) from error


class OpenTelemetrySink:
    """Record pullpush metrics with OpenTelemetry instruments.

    * ``counter`` adds to a ``Counter``;
    * ``gauge`` sets a synchronous ``Gauge`` (OpenTelemetry API >= 1.23), or, on
      older APIs, an ``ObservableGauge`` that reports the latest value per
      attribute set;
    * ``duration`` records into a ``Histogram`` with unit ``"s"``.

    Instruments are created on first use, one per name. The API's global meter
    provider is used unless a meter is given; configure the SDK and an exporter
    (OTLP, Prometheus...) as usual. Use it with a
    :class:`~pullpush.metrics.MetricsPump`.

    Args:
        meter: an OpenTelemetry ``Meter``; default
            ``opentelemetry.metrics.get_meter("pullpush")``.

    Raises:
        ImportError: no meter was given and ``opentelemetry-api`` is not installed
            (the message says which extra to install).
    """

    def __init__(self, meter: Any = None) -> None:
        if meter is None:
            meter = _otel_metrics().get_meter("pullpush")
        self.meter = meter
        self._counters: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}
        self._gauges: dict[str, Any] = {}
        # For observable gauges (older APIs): name -> attribute set -> latest value.
        self._latest: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}

    def counter(self, name: str, delta: float, attrs: MetricAttrs | None = None) -> None:
        """Add ``delta`` to the counter ``name``."""
        instrument = self._counters.get(name)
        if instrument is None:
            instrument = self._counters[name] = self.meter.create_counter(name)
        instrument.add(delta, dict(attrs) if attrs else None)

    def gauge(self, name: str, value: float, attrs: MetricAttrs | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""
        instrument = self._gauges.get(name)
        if instrument is None:
            instrument = self._gauges[name] = self._make_gauge(name)
        if instrument is _OBSERVED:
            self._latest[name][tuple(sorted((attrs or {}).items()))] = value
        else:
            instrument.set(value, dict(attrs) if attrs else None)

    def duration(self, name: str, seconds: float, attrs: MetricAttrs | None = None) -> None:
        """Record one duration (seconds) in the histogram ``name``."""
        instrument = self._histograms.get(name)
        if instrument is None:
            instrument = self._histograms[name] = self.meter.create_histogram(name, unit="s")
        instrument.record(seconds, dict(attrs) if attrs else None)

    def _make_gauge(self, name: str) -> Any:
        create = getattr(self.meter, "create_gauge", None)
        if create is not None:
            return create(name)
        observation = _otel_metrics().Observation
        latest = self._latest.setdefault(name, {})

        def observe(options: Any) -> list[Any]:
            return [observation(value, dict(key)) for key, value in latest.items()]

        self.meter.create_observable_gauge(name, callbacks=[observe])
        return _OBSERVED

    def __repr__(self) -> str:
        return f"<OpenTelemetrySink meter={self.meter!r}>"


_OBSERVED: Any = object()
"""Stands for an observable gauge, fed from ``_latest``."""
