"""Export: MetricsPump to sync and async sinks, render_prometheus, OpenTelemetrySink."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any

import pytest

from pullpush import (
    DefaultCapacityMetricsCollector,
    DefaultChainMetricsCollector,
    MetricsPump,
    MetricsSink,
    MetricsSnapshot,
    OpenTelemetrySink,
    ResourceCapacitySource,
    RunnerMetricsCollector,
    render_prometheus,
    snapshot_points,
)
from pullpush.testing import ManualClock


class ListSink:
    """A sink that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def counter(self, name: str, delta: float, attrs: Any = None) -> None:
        self.calls.append(("counter", name, delta, dict(attrs or {})))

    def gauge(self, name: str, value: float, attrs: Any = None) -> None:
        self.calls.append(("gauge", name, value, dict(attrs or {})))

    def duration(self, name: str, seconds: float, attrs: Any = None) -> None:
        self.calls.append(("duration", name, seconds, dict(attrs or {})))

    def of(self, kind: str, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind and c[1] == name]


class AsyncSink(ListSink):
    """Every method async, plus the optional snapshot and flush."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[MetricsSnapshot] = []
        self.flushes = 0

    async def counter(self, name: str, delta: float, attrs: Any = None) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().counter(name, delta, attrs)

    async def gauge(self, name: str, value: float, attrs: Any = None) -> None:  # type: ignore[override]
        super().gauge(name, value, attrs)

    async def duration(self, name: str, seconds: float, attrs: Any = None) -> None:  # type: ignore[override]
        super().duration(name, seconds, attrs)

    async def snapshot(self, snap: MetricsSnapshot) -> None:
        self.snapshots.append(snap)

    async def flush(self) -> None:
        self.flushes += 1


class BrokenSink(ListSink):
    def counter(self, name: str, delta: float, attrs: Any = None) -> None:
        raise RuntimeError("backend down")

    def flush(self) -> None:
        raise RuntimeError("flush failed")


def _collectors(clock: ManualClock) -> tuple[Any, Any, Any, ResourceCapacitySource]:
    capacity = DefaultCapacityMetricsCollector(clock=clock)
    source = ResourceCapacitySource({"memory_mb": 100}, metrics=capacity, clock=clock)
    chain = DefaultChainMetricsCollector(clock=clock)
    runner = RunnerMetricsCollector(clock=clock)
    return capacity, chain, runner, source


def test_sinks_satisfy_the_protocol() -> None:
    assert isinstance(ListSink(), MetricsSink)
    assert isinstance(OpenTelemetrySink(meter=FakeMeter()), MetricsSink)


async def test_a_tick_sends_counter_deltas_gauges_and_each_new_duration() -> None:
    clock = ManualClock()
    capacity, chain, runner, source = _collectors(clock)
    sink = ListSink()
    pump = MetricsPump(sink, capacity, ("pipeline", chain), runner, clock=clock)
    source.acquire_immediate({"memory_mb": 25})
    token = chain.enter_section("parse")
    clock.advance(0.5)
    chain.leave_section("parse", token)
    snap = await pump.tick()
    assert set(snap.capacity) == {"capacity"} and set(snap.chain) == {"pipeline"}
    assert set(snap.runner) == {"runner"}
    assert sink.of("counter", "pullpush.capacity.acquire_accepted") == [
        ("counter", "pullpush.capacity.acquire_accepted", 1, {"source": "capacity"})
    ]
    assert sink.of("gauge", "pullpush.capacity.utilization") == [
        (
            "gauge",
            "pullpush.capacity.utilization",
            0.25,
            {"source": "capacity", "resource": "memory_mb"},
        )
    ]
    assert sink.of("duration", "pullpush.chain.section.duration") == [
        (
            "duration",
            "pullpush.chain.section.duration",
            0.5,
            {"source": "pipeline", "section": "parse"},
        )
    ]
    assert sink.of("counter", "pullpush.capacity.release") == []  # nothing to add yet
    sink.calls.clear()
    source.acquire_immediate({"memory_mb": 25})
    source.release({"memory_mb": 50})
    await pump.tick()
    assert [c[2] for c in sink.of("counter", "pullpush.capacity.acquire_accepted")] == [1]
    assert [c[2] for c in sink.of("counter", "pullpush.capacity.release")] == [1]
    assert sink.of("duration", "pullpush.chain.section.duration") == []  # each one once
    capacity.reset()  # a total going down restarts the counter
    source.acquire_immediate({"memory_mb": 1})
    sink.calls.clear()
    await pump.tick()
    assert [c[2] for c in sink.of("counter", "pullpush.capacity.acquire_accepted")] == [1]
    source.release({"memory_mb": 1})


async def test_async_sinks_get_the_snapshot_then_points_then_flush() -> None:
    clock = ManualClock(7)
    capacity, _, runner, _ = _collectors(clock)
    sink = AsyncSink()
    pump = MetricsPump(sink, ("pool", capacity), ("jobs", runner), clock=clock, prefix="")
    runner.on_task_pulled()
    runner.on_task_started(0)
    clock.advance(2)
    runner.on_task_ended(0)
    snap = await pump.tick()
    assert sink.snapshots == [snap] and snap.captured_at == 9 and sink.flushes == 1
    assert sink.of("duration", "runner.task.duration") == [
        ("duration", "runner.task.duration", 2, {"source": "jobs"})
    ]
    assert sink.of("counter", "runner.started") == [
        ("counter", "runner.started", 1, {"source": "jobs"})
    ]


async def test_sink_errors_are_logged_once_per_tick_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    capacity, _, _, source = _collectors(clock)
    source.acquire_immediate({"memory_mb": 1})
    sink = BrokenSink()
    with caplog.at_level(logging.ERROR, logger="pullpush.metrics"):
        await MetricsPump(sink, capacity, clock=clock).tick()
    assert sink.of("gauge", "pullpush.capacity.in_flight")  # the rest still went out
    records = [r for r in caplog.records if r.name == "pullpush.metrics"]
    assert len(records) == 1 and "backend down" in records[0].getMessage()
    assert "flush failed" not in records[0].getMessage()  # only the first is quoted
    assert "failed 3 time(s)" in records[0].getMessage()


async def test_a_failing_source_is_left_out_and_others_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def snapshot(self, now: float | None = None) -> object:
            raise RuntimeError("no snapshot")

    class Custom:
        def snapshot(self, now: float | None = None) -> object:
            return {"custom": 1}

    clock = ManualClock()
    runner = RunnerMetricsCollector(clock=clock)
    with caplog.at_level(logging.ERROR, logger="pullpush.metrics"):
        snap = await MetricsPump(ListSink(), Broken(), Custom(), runner, clock=clock).tick()
    assert set(snap.runner) == {"runner"} and snap.other == {"Custom": {"custom": 1}}
    assert "no snapshot" in caplog.text


def test_pump_arguments_are_checked() -> None:
    runner = RunnerMetricsCollector()
    with pytest.raises(ValueError, match="two metrics sources are named 'runner'"):
        MetricsPump(ListSink(), runner, RunnerMetricsCollector())
    with pytest.raises(TypeError, match="snapshot"):
        MetricsPump(ListSink(), object())
    with pytest.raises(ValueError, match="interval"):
        MetricsPump(ListSink(), runner, interval=0)


async def test_the_pump_ticks_on_its_interval_and_pushes_a_last_tick_on_close() -> None:
    ticked = asyncio.Event()

    class Sink(ListSink):
        def flush(self) -> None:
            if len([c for c in self.calls if c[1] == "pullpush.runner.running"]) >= 2:
                ticked.set()

    sink = Sink()
    runner = RunnerMetricsCollector()
    async with MetricsPump(sink, runner, interval=0.001) as pump:
        assert pump.running
        pump.start()  # idempotent
        await ticked.wait()
        runner.on_task_pulled()
    assert not pump.running
    assert sink.of("gauge", "pullpush.runner.queued")[-1][2] == 1  # the final tick
    await pump.aclose()  # idempotent


def test_prometheus_text_has_help_type_valid_names_and_escaped_labels() -> None:
    clock = ManualClock()
    chain = DefaultChainMetricsCollector(clock=clock)
    chain.on_turnstile_pass('in"put\\', at=0)
    chain.on_turnstile_pass("out\nlet", at=2)
    capacity, _, runner, source = _collectors(clock)
    source.try_acquire({"memory_mb": 40})
    text = render_prometheus(
        MetricsSnapshot(0, {"cap": capacity.snapshot()}, {"chain": chain.snapshot()}, {}),
        prefix="app",
    )
    lines = text.splitlines()
    assert text.endswith("\n")
    assert (
        "# HELP app_capacity_acquire_accepted_total Acquires that took their cost (every path)"
        in lines
    )
    assert "# TYPE app_capacity_acquire_accepted_total counter" in lines
    assert 'app_capacity_acquire_accepted_total{source="cap"} 1' in lines
    assert 'app_capacity_utilization{source="cap",resource="memory_mb"} 0.4' in lines
    assert "# TYPE app_chain_stage_latency_seconds_avg gauge" in lines
    assert (
        'app_chain_stage_latency_seconds_avg{source="chain",stage="in\\"put\\\\->out\\nlet"} 2'
        in lines
    )
    name = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    families: list[str] = []
    for line in lines:
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
        elif not line.startswith("#"):
            metric = line.split("{")[0].split(" ")[0]
            assert name.match(metric), line
            assert metric == families[-1], f"{line} is not under its own TYPE line"
    assert len(families) == len(set(families))  # each family once, samples together
    assert render_prometheus(runner.snapshot()).startswith("# HELP pullpush_runner_queued ")


def test_prometheus_edge_cases() -> None:
    assert render_prometheus(MetricsSnapshot(0)) == ""
    with pytest.raises(TypeError, match="not a metrics snapshot"):
        render_prometheus(object())
    runner = RunnerMetricsCollector(clock=ManualClock())
    text = render_prometheus(runner.snapshot(), prefix="9bad-prefix")
    assert "\n_9bad_prefix_runner_running 0\n" in text
    points = snapshot_points(runner.snapshot(), {"host": "a"})
    assert all(p.attrs == {"host": "a"} for p in points)


# -- OpenTelemetry ----------------------------------------------------------------------


class FakeInstrument:
    def __init__(self, log: list[tuple[Any, ...]], kind: str, name: str) -> None:
        self.log, self.kind, self.name = log, kind, name

    def add(self, value: float, attributes: Any = None) -> None:
        self.log.append((self.kind, self.name, value, attributes))

    set = record = add


class FakeMeter:
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.created: list[tuple[str, str, dict[str, Any]]] = []

    def _make(self, kind: str, name: str, **options: Any) -> FakeInstrument:
        self.created.append((kind, name, options))
        return FakeInstrument(self.log, kind, name)

    def create_counter(self, name: str, **options: Any) -> FakeInstrument:
        return self._make("counter", name, **options)

    def create_gauge(self, name: str, **options: Any) -> FakeInstrument:
        return self._make("gauge", name, **options)

    def create_histogram(self, name: str, **options: Any) -> FakeInstrument:
        return self._make("histogram", name, **options)


def test_otel_sink_records_into_instruments_created_once() -> None:
    meter = FakeMeter()
    sink = OpenTelemetrySink(meter)
    sink.counter("c", 2, {"a": 1})
    sink.counter("c", 3)
    sink.gauge("g", 0.5, {"r": "m"})
    sink.duration("d", 1.25)
    assert meter.log == [
        ("counter", "c", 2, {"a": 1}),
        ("counter", "c", 3, None),
        ("gauge", "g", 0.5, {"r": "m"}),
        ("histogram", "d", 1.25, None),
    ]
    assert meter.created == [
        ("counter", "c", {}),
        ("gauge", "g", {}),
        ("histogram", "d", {"unit": "s"}),
    ]


def test_otel_sink_without_the_api_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'pullpush\[otel\]'"):
        OpenTelemetrySink()
    OpenTelemetrySink(FakeMeter())  # a meter given: nothing to import


async def test_otel_sink_with_the_real_sdk() -> None:
    sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    reader = export.InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    sink = OpenTelemetrySink(provider.get_meter("test"))
    clock = ManualClock()
    runner = RunnerMetricsCollector(clock=clock)
    runner.on_task_pulled()
    runner.on_task_started(0)
    clock.advance(0.25)
    runner.on_task_ended(0)
    await MetricsPump(sink, ("jobs", runner), clock=clock).tick()
    found: dict[str, Any] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = metric
    assert found["pullpush.runner.started"].data.data_points[0].value == 1
    assert found["pullpush.runner.running"].data.data_points[0].value == 0
    histogram = found["pullpush.runner.task.duration"].data.data_points[0]
    assert (histogram.count, histogram.sum) == (1, 0.25)
    assert dict(histogram.attributes) == {"source": "jobs"}
    provider.shutdown()


def test_otel_sink_falls_back_to_observable_gauges_on_older_apis() -> None:
    pytest.importorskip("opentelemetry.metrics")

    class OldMeter(FakeMeter):
        create_gauge = None  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.callbacks: list[Any] = []

        def create_observable_gauge(self, name: str, callbacks: list[Any]) -> None:
            self.created.append(("observable_gauge", name, {}))
            self.callbacks.extend(callbacks)

    meter = OldMeter()
    sink = OpenTelemetrySink(meter)
    sink.gauge("g", 1.0, {"r": "a"})
    sink.gauge("g", 2.0, {"r": "a"})
    sink.gauge("g", 5.0)
    assert meter.created == [("observable_gauge", "g", {})]
    observed = [(o.value, dict(o.attributes or {})) for o in meter.callbacks[0](None)]
    assert observed == [(2.0, {"r": "a"}), (5.0, {})]
