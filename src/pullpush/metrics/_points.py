"""One naming of every snapshot as metric points, shared by the pump and Prometheus."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Literal

from ._capacity import CapacityMetricsSnapshot
from ._chain import ChainMetricsSnapshot
from ._runner_metrics import RunnerMetricsSnapshot
from ._sink import MetricAttrs, MetricsSnapshot
from ._window import RollingWindowStats

__all__ = ["MetricPoint", "snapshot_points"]


@dataclasses.dataclass(frozen=True)
class MetricPoint:
    """One number of a snapshot, named for export.

    ``name`` is dotted and unprefixed (``"capacity.acquire_accepted"``); a counter's
    ``value`` is its running total (exporters that want deltas take differences).
    """

    kind: Literal["counter", "gauge"]
    name: str
    value: float
    attrs: MetricAttrs
    help: str


def _merge(base: MetricAttrs, extra: MetricAttrs) -> MetricAttrs:
    return {**base, **extra} if extra else base


def _window(
    name: str, stats: RollingWindowStats, attrs: MetricAttrs, what: str
) -> Iterator[MetricPoint]:
    """A window of durations as gauges: count, avg, min and max over the window."""
    window = f"over the last {stats.window:g} s"
    yield MetricPoint("gauge", f"{name}.count", stats.count, attrs, f"{what}: how many {window}")
    if stats.count:
        yield MetricPoint("gauge", f"{name}.avg", stats.avg, attrs, f"{what}: mean {window}")
        assert stats.min is not None and stats.max is not None
        yield MetricPoint("gauge", f"{name}.min", stats.min, attrs, f"{what}: least {window}")
        yield MetricPoint("gauge", f"{name}.max", stats.max, attrs, f"{what}: most {window}")


def _rate(name: str, stats: RollingWindowStats, attrs: MetricAttrs, what: str) -> MetricPoint:
    return MetricPoint(
        "gauge", name, stats.rate, attrs, f"{what} per second over the last {stats.window:g} s"
    )


def _capacity(snap: CapacityMetricsSnapshot, attrs: MetricAttrs) -> Iterator[MetricPoint]:
    totals = snap.totals
    for field, what in (
        ("acquire_accepted", "Acquires that took their cost (every path)"),
        ("acquire_rejected", "try_acquire calls refused"),
        ("release", "Releases"),
        ("reset", "Refills to the limits"),
        ("increment", "Top-ups of the available budget"),
        ("set_limits", "Limit changes"),
        ("reconcile", "Estimates corrected with measured use"),
    ):
        yield MetricPoint("counter", f"capacity.{field}", getattr(totals, field), attrs, what)
    for key, amount in snap.in_flight_by_resource.items():
        yield MetricPoint(
            "gauge",
            "capacity.in_flight",
            amount,
            _merge(attrs, {"resource": key}),
            "Amount acquired and not released, per resource",
        )
    for key, amount in snap.requested_rejected_by_resource.items():
        yield MetricPoint(
            "counter",
            "capacity.requested_rejected",
            amount,
            _merge(attrs, {"resource": key}),
            "Amount asked for by acquires refused for lack of capacity, per resource",
        )
    for key, used in snap.utilization_by_resource.items():
        yield MetricPoint(
            "gauge",
            "capacity.utilization",
            used,
            _merge(attrs, {"resource": key}),
            "(limit - available) / limit, per resource",
        )
    rates = snap.rates
    yield _rate("capacity.acquire_accepted_rate", rates.acquire_accepted_per_sec, attrs, "Acquires")
    yield _rate("capacity.acquire_rejected_rate", rates.acquire_rejected_per_sec, attrs, "Refusals")
    yield _rate("capacity.release_rate", rates.release_per_sec, attrs, "Releases")


def _chain(snap: ChainMetricsSnapshot, attrs: MetricAttrs) -> Iterator[MetricPoint]:
    for name, turnstile in snap.turnstiles.items():
        at = _merge(attrs, {"checkpoint": name})
        yield MetricPoint(
            "counter", "chain.turnstile.passed", turnstile.passed, at, "Items past a checkpoint"
        )
        yield _rate("chain.turnstile.throughput", turnstile.throughput_per_sec, at, "Items")
    for name, section in snap.sections.items():
        at = _merge(attrs, {"section": name})
        for field, what in (
            ("entered", "Entries into a section"),
            ("left", "Exits from a section"),
            ("errored", "Exits from a section with an error"),
            ("cancelled", "Exits from a section by cancellation"),
        ):
            yield MetricPoint(
                "counter", f"chain.section.{field}", getattr(section, field), at, what
            )
        yield MetricPoint(
            "gauge", "chain.section.in_flight", section.in_flight, at, "Inside a section now"
        )
        yield from _window(
            "chain.section.duration_seconds", section.duration, at, "Seconds in a section"
        )
    for key, stats in snap.stage_latency.items():
        yield from _window(
            "chain.stage.latency_seconds",
            stats,
            _merge(attrs, {"stage": key}),
            "Seconds between two checkpoints",
        )


def _runner(snap: RunnerMetricsSnapshot, attrs: MetricAttrs) -> Iterator[MetricPoint]:
    yield MetricPoint("gauge", "runner.queued", snap.queued, attrs, "Tasks taken, not started")
    yield MetricPoint("gauge", "runner.running", snap.running, attrs, "Tasks running")
    for field, what in (
        ("started", "Tasks started"),
        ("completed", "Tasks completed (FINAL envelopes)"),
        ("failed", "Task failures (ERROR envelopes)"),
        ("rejected", "Tasks rejected before running"),
        ("envelopes", "Envelopes produced"),
    ):
        yield MetricPoint("counter", f"runner.{field}", getattr(snap, field), attrs, what)
    yield _rate("runner.envelope_rate", snap.envelopes_per_sec, attrs, "Envelopes")
    yield from _window(
        "runner.task.duration_seconds", snap.task_duration, attrs, "Seconds a task ran"
    )


def snapshot_points(snapshot: object, attrs: MetricAttrs | None = None) -> list[MetricPoint]:
    """Name every number of ``snapshot`` as a :class:`MetricPoint`.

    Args:
        snapshot: a :class:`MetricsSnapshot` (each collector's points get
            ``{"source": name}``), or one collector's snapshot.
        attrs: attributes added to every point.

    Raises:
        TypeError: ``snapshot`` is of no known snapshot type.
    """
    base: Mapping[str, str | int | float | bool] = dict(attrs or {})
    if isinstance(snapshot, MetricsSnapshot):
        points: list[MetricPoint] = []
        for group in (snapshot.capacity, snapshot.chain, snapshot.runner):
            for name, snap in group.items():
                points.extend(snapshot_points(snap, _merge(base, {"source": name})))
        return points
    if isinstance(snapshot, CapacityMetricsSnapshot):
        return list(_capacity(snapshot, base))
    if isinstance(snapshot, ChainMetricsSnapshot):
        return list(_chain(snapshot, base))
    if isinstance(snapshot, RunnerMetricsSnapshot):
        return list(_runner(snapshot, base))
    raise TypeError(f"not a metrics snapshot: {type(snapshot).__name__}")
