"""RunnerMetricsCollector through both runners' ``metrics=`` keyword."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    PushPullBufferObj,
    ResourceCapacitySource,
    RollingWindowStats,
    RunnerMetricsCollector,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
)
from pullpush.testing import ManualClock, collect, settle


def test_hooks_drive_the_numbers_deterministically() -> None:
    clock = ManualClock()
    metrics = RunnerMetricsCollector(10.0, clock)
    for _ in range(3):
        metrics.on_task_pulled()
    metrics.on_task_started(0)
    metrics.on_task_started(1)
    assert (metrics.snapshot().queued, metrics.snapshot().running) == (1, 2)
    clock.advance(2)
    metrics.on_task_ended(0)
    metrics.on_envelope(TaskProgressEnvelope(EnvelopeType.FINAL, 0, value="v"))
    clock.advance(1)
    metrics.on_task_ended(1)
    metrics.on_envelope(TaskProgressEnvelope(EnvelopeType.ERROR, 1, error=ValueError()))
    metrics.on_task_rejected()
    metrics.on_envelope(TaskProgressEnvelope(EnvelopeType.ERROR, 2, error=TypeError()))
    metrics.on_task_ended(7)  # never started: ignored
    snap = metrics.snapshot()
    assert (snap.queued, snap.running, snap.started) == (0, 0, 2)
    assert (snap.completed, snap.failed, snap.rejected, snap.envelopes) == (1, 2, 1, 3)
    assert snap.task_duration == RollingWindowStats(10.0, 2, 5, 2.5, 2, 3)
    assert snap.envelopes_per_sec.count == 3
    assert snap.captured_at == 3


async def test_hierarchical_runner_reports_every_task() -> None:
    metrics = RunnerMetricsCollector()

    def task(i: int) -> Any:
        async def run() -> Any:
            await asyncio.sleep(0)
            if i == 3:
                raise ValueError("boom")
            yield i  # a streaming task: INTERMEDIATE, then FINAL

        return run

    tasks = [task(i) for i in range(5)] + ["not callable"]
    runner = HierarchicalTaskPoolRunner("m", tasks, CapacitySource(2), metrics=metrics)
    assert runner.metrics is metrics
    envelopes = await collect(runner.run_tasks())
    snap = metrics.snapshot()
    assert (snap.queued, snap.running, snap.started, snap.rejected) == (0, 0, 5, 1)
    assert (snap.completed, snap.failed) == (4, 2)
    assert snap.envelopes == len(envelopes) == 4 + 4 + 2
    assert snap.task_duration.count == 5


async def test_scheduled_runner_reports_queued_tasks_while_capacity_is_short() -> None:
    metrics = RunnerMetricsCollector()
    capacity = ResourceCapacitySource({"slots": 1})
    gate = asyncio.Event()

    async def job() -> str:
        await gate.wait()
        return "ok"

    buffer: PushPullBufferObj[ScheduledTask[Any]] = PushPullBufferObj()
    runner = ScheduledTaskPoolRunner("s", buffer.source, capacity, backfill=1, metrics=metrics)
    for key in "abc":
        await buffer.sink.asend(ScheduledTask(key, job, cost={"slots": 1}))
    stream = runner.run_tasks()
    first = asyncio.ensure_future(stream.__anext__())
    await settle()
    snap = metrics.snapshot()
    assert (snap.running, snap.started) == (1, 1)
    assert snap.queued >= 1  # taken from the source, waiting for a slot
    gate.set()
    await buffer.sink.aclose()
    results = [await first] + [e async for e in stream]
    assert [e.value for e in results] == ["ok"] * 3
    snap = metrics.snapshot()
    assert (snap.queued, snap.running, snap.completed, snap.failed) == (0, 0, 3, 0)


async def test_leaving_early_ends_running_tasks_without_counting_them_done() -> None:
    metrics = RunnerMetricsCollector()

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def quick() -> str:
        return "quick"

    runner = HierarchicalTaskPoolRunner(
        "early", [quick, forever, forever], CapacitySource(3), metrics=metrics
    )
    stream = runner.run_tasks()
    async for _ in stream:
        break
    await stream.aclose()
    snap = metrics.snapshot()
    assert (snap.running, snap.started, snap.completed, snap.failed) == (0, 3, 1, 0)
    assert snap.task_duration.count == 3


async def test_no_metrics_means_no_hooks() -> None:
    runner = HierarchicalTaskPoolRunner("plain", [], CapacitySource(1))
    assert runner.metrics is None
    assert await collect(runner.run_tasks()) == []


def test_a_metrics_object_without_the_hooks_is_refused_naming_what_is_missing() -> None:
    class Partial:
        def on_task_pulled(self) -> None: ...

    with pytest.raises(TypeError, match="int lacks on_task_pulled"):
        HierarchicalTaskPoolRunner("r", [], CapacitySource(1), metrics=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int lacks on_task_pulled"):
        ScheduledTaskPoolRunner(
            "r",
            [],
            ResourceCapacitySource({"capacity": 1}),
            metrics=42,  # type: ignore[arg-type]
        )
    missing = "Partial lacks on_task_started, on_task_rejected, on_task_ended, on_envelope"
    with pytest.raises(TypeError, match=missing):
        HierarchicalTaskPoolRunner("r", [], CapacitySource(1), metrics=Partial())  # type: ignore[arg-type]
