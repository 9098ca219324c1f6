"""When a task is admitted: a capacity that can never admit one says so, and a task's
``timeout`` clock starts when the task starts (not while it waits for a thread)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ImpossibleCostError,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskTimeoutError,
    ThreadExecutor,
)
from pullpush.testing import assert_one_terminal_per_task, collect


@pytest.mark.timeout(20)
async def test_a_capacity_of_zero_warns_naming_it_then_runs_once_raised() -> None:
    capacity = CapacitySource(0)
    runner = HierarchicalTaskPoolRunner("zero", [lambda: 1, lambda: 2], capacity)
    runner.stall_warning = 0.05
    stream = runner.run_tasks()
    first = asyncio.ensure_future(stream.__anext__())
    with pytest.warns(RuntimeWarning, match=r"runner 'zero' .*CapacitySource.* has limit 0"):
        await asyncio.sleep(0.3)
    assert not first.done()  # nothing could start
    capacity.set_limit(1)
    envelopes = [await first, *[e async for e in stream]]
    ends = assert_one_terminal_per_task(envelopes)
    assert sorted(e.value for e in ends.values()) == [1, 2]
    assert all(e.type is EnvelopeType.FINAL for e in ends.values())
    assert capacity.in_use == 0


@pytest.mark.timeout(20)
async def test_a_unit_costing_more_than_a_resource_parent_allows_is_named() -> None:
    memory = ResourceCapacitySource({"memory_mb": 100})
    capacity = CapacitySource(4, parent=memory, cost={"memory_mb": 500})
    runner = HierarchicalTaskPoolRunner("big", [lambda: 1], capacity)
    runner.stall_warning = 0.05
    stream = runner.run_tasks()
    first = asyncio.ensure_future(stream.__anext__())
    with pytest.warns(RuntimeWarning, match=r"memory_mb=100, one task costs 500"):
        await asyncio.sleep(0.3)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await stream.aclose()
    assert capacity.in_use == 0 and memory.in_use == {"memory_mb": 0.0}


@pytest.mark.timeout(20)
async def test_capacity_held_elsewhere_warns_without_blaming_a_limit() -> None:
    capacity = CapacitySource(1)
    await capacity.acquire()  # held by someone else
    runner = HierarchicalTaskPoolRunner("busy", [lambda: 1], capacity)
    runner.stall_warning = 0.05
    stream = runner.run_tasks()
    first = asyncio.ensure_future(stream.__anext__())
    with pytest.warns(RuntimeWarning, match=r"units are all held elsewhere"):
        await asyncio.sleep(0.3)
    capacity.release()
    envelope = await first
    assert envelope.type is EnvelopeType.FINAL and envelope.value == 1
    await stream.aclose()
    assert capacity.in_use == 0


@pytest.mark.timeout(20)
async def test_no_warning_while_the_runner_has_tasks_running() -> None:
    capacity = CapacitySource(1)

    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "slow"

    runner = HierarchicalTaskPoolRunner("ok", [slow, slow], capacity)
    runner.stall_warning = 0.05
    ends = assert_one_terminal_per_task(
        await collect(runner.run_tasks())
    )  # filterwarnings=error: none
    assert [e.value for e in ends.values()] == ["slow", "slow"]


@pytest.mark.timeout(20)
async def test_a_scheduled_cost_over_a_parent_limit_is_rejected_by_name() -> None:
    root = ResourceCapacitySource({"cpu": 4, "memory_mb": 100})
    capacity = ResourceCapacitySource({"cpu": 4, "memory_mb": 1000}, parent=root)
    source = [
        ScheduledTask("big", lambda: "never", cost={"cpu": 1, "memory_mb": 500}),
        ScheduledTask("small", lambda: "ran", cost={"cpu": 1, "memory_mb": 50}),
    ]
    runner: ScheduledTaskPoolRunner[str] = ScheduledTaskPoolRunner("s", source, capacity)
    ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
    by_key = {e.key: e for e in ends.values()}
    assert by_key["small"].type is EnvelopeType.FINAL and by_key["small"].value == "ran"
    assert by_key["big"].type is EnvelopeType.ERROR
    assert isinstance(by_key["big"].error, ImpossibleCostError)
    assert "'big'" in str(by_key["big"].error) and "memory_mb" in str(by_key["big"].error)
    assert root.in_use == {"cpu": 0.0, "memory_mb": 0.0}


class _Recorder:
    """TaskEvents that records the order of starts and ends."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.ended = asyncio.Event()
        self.count = 0

    def task_started(self, task_id: int) -> None:
        self.log.append(("started", task_id))

    def task_intermediate(self, task_id: int, value: Any) -> None:
        pass

    def task_final(self, task_id: int, value: Any) -> None:
        self._end("final", task_id)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self._end("error", task_id)

    def _end(self, kind: str, task_id: int) -> None:
        self.log.append((kind, task_id))
        self.count += 1
        if self.count == 3:
            self.ended.set()


@pytest.mark.timeout(20)
async def test_thread_executor_reports_a_queued_task_started_when_it_gets_a_thread() -> None:
    gate = threading.Event()
    async with ThreadExecutor(1) as executor:
        events = _Recorder()
        executor.submit(0, gate.wait, events)
        executor.submit(1, lambda: 1, events)
        handle = executor.submit(2, lambda: 2, events)
        await asyncio.sleep(0.05)
        assert events.log == [("started", 0)]  # 1 and 2 wait for the thread
        handle.cancel()  # cancelled while queued: never reported started
        gate.set()
        await asyncio.wait_for(events.ended.wait(), 5)
    assert events.log == [
        ("started", 0),
        ("error", 2),
        ("final", 0),
        ("started", 1),
        ("final", 1),
    ] or events.log == [("started", 0), ("error", 2), ("started", 1), ("final", 0), ("final", 1)]


@pytest.mark.timeout(20)
async def test_thread_timeout_still_fires_for_a_running_task() -> None:
    capacity = CapacitySource(2)

    def slow() -> str:
        time.sleep(0.5)
        return "late"

    runner = HierarchicalTaskPoolRunner(
        "t", [slow, lambda: "quick"], capacity, executor="thread", timeout=0.2
    )
    ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
    values = sorted(
        (e.type.name, type(e.error).__name__ if e.error else e.value) for e in ends.values()
    )
    assert values == [("ERROR", "TaskTimeoutError"), ("FINAL", "quick")]
    assert isinstance(next(e for e in ends.values() if e.error).error, TaskTimeoutError)
    assert capacity.in_use == 0
