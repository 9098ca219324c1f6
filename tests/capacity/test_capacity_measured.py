"""Measured capacity: MemoryCapacitySource and CpuCapacitySource with fake samplers
(deterministic), the sampling lifecycle, hierarchy use, and real psutil readings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import pytest

from pullpush import (
    CapacitySetLimitsEvent,
    CapacitySource,
    CpuCapacitySource,
    HierarchicalTaskPoolRunner,
    MemoryCapacitySource,
    MemorySample,
    ResourceCapacitySource,
)
from pullpush.testing import ManualClock, collect, settle

TOTAL = 16_000.0


class FakeMemory:
    """A memory sampler whose available MiB the test sets."""

    def __init__(self, available: float, total: float = TOTAL) -> None:
        self.available = available
        self.total = total
        self.calls = 0

    def __call__(self) -> MemorySample:
        self.calls += 1
        return MemorySample(self.available, self.total)


class FakeCpu:
    """A CPU sampler returning the given readings, then repeating the last one."""

    def __init__(self, readings: Iterable[float]) -> None:
        self.readings = list(readings)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


class Limits:
    """A collector that keeps the set_limits events."""

    def __init__(self) -> None:
        self.events: list[CapacitySetLimitsEvent] = []

    def on_set_limits(self, event: CapacitySetLimitsEvent) -> None:
        self.events.append(event)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda event: None
        raise AttributeError(name)


# -- memory ---------------------------------------------------------------------------


def test_the_limit_is_the_headroom_above_the_reserve_in_whole_mib() -> None:
    memory = MemoryCapacitySource(2048, sampler=FakeMemory(6000.7), settle=0)
    assert memory.limits == {"memory_mb": 3952}
    assert memory.last_sample == MemorySample(6000.7, TOTAL)
    assert memory.reserve_mb == 2048
    assert MemoryCapacitySource(2048, sampler=FakeMemory(1000), settle=0).limits == {"memory_mb": 0}


async def test_memory_held_by_running_tasks_is_not_counted_twice() -> None:
    fake = FakeMemory(6000)
    memory = MemoryCapacitySource(2000, sampler=fake, settle=0)
    await memory.acquire({"memory_mb": 1500})
    # The task allocates what it declared: the system has 1500 MiB less available.
    fake.available = 4500
    memory.sample_now()
    assert memory.limits == {"memory_mb": 1500 + 2500}
    assert memory.available == {"memory_mb": 2500}  # the headroom, unchanged
    memory.release({"memory_mb": 1500})
    fake.available = 6000  # freed again
    memory.sample_now()
    assert (memory.limits, memory.available) == ({"memory_mb": 4000}, {"memory_mb": 4000})


async def test_a_growing_sample_serves_waiters_and_a_shrinking_one_revokes_nothing() -> None:
    fake = FakeMemory(1500)
    memory = MemoryCapacitySource(1000, sampler=fake, settle=0)
    await memory.acquire({"memory_mb": 400})
    waiting = asyncio.create_task(memory.acquire({"memory_mb": 600}))
    await settle()
    assert memory.waiting == 1
    fake.available = 1200  # headroom 200 beyond the 400 in use: not enough yet
    memory.sample_now()
    assert memory.waiting == 1
    fake.available = 1700  # headroom 700
    memory.sample_now()
    assert await waiting == {"memory_mb": 100}
    fake.available = 0  # memory pressure: the limit drops to what is in use
    memory.sample_now()
    assert (memory.limits, memory.in_use, memory.available) == (
        {"memory_mb": 1000},
        {"memory_mb": 1000},
        {"memory_mb": 0},
    )
    assert not memory.try_acquire({"memory_mb": 1})
    memory.release({"memory_mb": 1000})


def test_limit_changes_are_set_limits_events_only_when_the_limit_moves() -> None:
    fake = FakeMemory(3000)
    collector = Limits()
    memory = MemoryCapacitySource(
        1000, sampler=fake, metrics=collector, clock=ManualClock(5), settle=0
    )
    memory.sample_now()  # same headroom: no event
    fake.available = 3500
    memory.sample_now()
    assert collector.events == [
        CapacitySetLimitsEvent(5, {}, {"memory_mb": 2000}, {"memory_mb": 2000}),
        CapacitySetLimitsEvent(5, {"memory_mb": 2000}, {"memory_mb": 2500}, {"memory_mb": 2500}),
    ]


async def test_reconcile_corrects_an_estimate_with_the_measured_use() -> None:
    fake = FakeMemory(5000)
    memory = MemoryCapacitySource(1000, sampler=fake, settle=0)
    await memory.acquire({"memory_mb": 500})
    # The task's measured peak was 800 MiB, not the 500 it declared.
    memory.reconcile({"memory_mb": 500}, {"memory_mb": 800})
    assert (memory.in_use, memory.available) == ({"memory_mb": 800}, {"memory_mb": 3200})
    fake.available = 4200  # the 800 MiB are resident
    memory.sample_now()
    assert (memory.limits, memory.available) == ({"memory_mb": 4000}, {"memory_mb": 3200})
    memory.release({"memory_mb": 800})  # release the actual, not the estimate
    assert memory.in_use == {"memory_mb": 0}


async def test_a_runner_pool_under_a_memory_parent() -> None:
    fake = FakeMemory(2000)
    memory = MemoryCapacitySource(1000, sampler=fake, settle=0)
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
    assert await pool.acquire() == 7
    assert await pool.acquire() == 6
    third = asyncio.create_task(pool.acquire())
    await settle()
    assert (pool.in_use, pool.waiting, memory.in_use) == (2, 1, {"memory_mb": 1000})
    fake.available = 1600  # 600 MiB headroom beyond the 1000 in use (assumed resident)
    memory.sample_now()
    assert await third == 5
    assert memory.in_use == {"memory_mb": 1500}
    for _ in range(3):
        pool.release()
    assert memory.in_use == {"memory_mb": 0}


async def test_memory_under_a_static_parent_and_reconcile_up_the_chain() -> None:
    root = ResourceCapacitySource({"memory_mb": 3000})
    memory = MemoryCapacitySource(0, parent=root, sampler=FakeMemory(10_000), settle=0)
    await memory.acquire({"memory_mb": 1000})
    memory.reconcile({"memory_mb": 1000}, {"memory_mb": 400})
    assert (root.in_use, memory.in_use) == ({"memory_mb": 400}, {"memory_mb": 400})
    assert not memory.can_acquire({"memory_mb": 2700})  # the root still bounds it
    memory.release({"memory_mb": 400})


# -- CPU ------------------------------------------------------------------------------


async def test_cpu_gate_closes_above_target_and_reopens_below_target_minus_hysteresis() -> None:
    fake = FakeCpu([50, 85, 75, 71, 69.5])
    cpu = CpuCapacitySource(80, hysteresis=10, sampler=fake)
    child = ResourceCapacitySource({"slots": 4}, parent=cpu)
    assert cpu.is_open and cpu.cpu_percent is None
    assert [cpu.sample_now(), cpu.is_open] == [50, True]
    assert child.try_acquire({"slots": 1})
    assert [cpu.sample_now(), cpu.is_open] == [85, False]
    assert not child.can_acquire({"slots": 1})
    assert not child.try_acquire({})  # closed for any cost
    assert child.peek() is None
    waiting = asyncio.create_task(child.acquire({"slots": 1}))
    await settle()
    assert [cpu.sample_now(), cpu.is_open, child.waiting] == [75, False, 1]
    assert [cpu.sample_now(), cpu.is_open, child.waiting] == [71, False, 1]  # no flapping
    assert [cpu.sample_now(), cpu.is_open] == [69.5, True]
    assert await waiting == {"slots": 2}  # reopening served it
    assert child.peek() == {"slots": 2}
    child.release({"slots": 2})


async def test_cpu_gate_over_a_unit_pool_and_a_memory_source() -> None:
    fake = FakeCpu([95])
    cpu = CpuCapacitySource(90, hysteresis=5, sampler=fake)
    memory = MemoryCapacitySource(0, parent=cpu, sampler=FakeMemory(1000), settle=0)
    pool = CapacitySource(2, parent=memory, cost={"memory_mb": 100})
    assert pool.acquire_nowait()
    cpu.sample_now()  # closed: running work keeps its capacity, nothing new starts
    assert (pool.in_use, pool.peek(), pool.try_acquire().ok) == (1, None, False)
    waiting = asyncio.create_task(pool.acquire())
    await settle()
    fake.readings = [10]
    cpu.sample_now()
    assert await waiting == 0
    assert memory.in_use == {"memory_mb": 200}
    pool.release()
    pool.release()


def test_cpu_readings_are_clamped_to_percentages() -> None:
    cpu = CpuCapacitySource(50, hysteresis=0, sampler=FakeCpu([130]))
    assert cpu.sample_now() == 100 and not cpu.is_open
    assert (cpu.target, cpu.hysteresis) == (50, 0)


# -- sampling lifecycle -----------------------------------------------------------------


async def test_async_with_samples_at_once_then_on_the_interval_then_stops() -> None:
    fake = FakeMemory(3000)
    seen = asyncio.Event()
    calls_at_start = 0

    def sampler() -> MemorySample:
        if fake.calls >= calls_at_start + 3:
            seen.set()
        return fake()

    memory = MemoryCapacitySource(1000, interval=0.001, sampler=sampler, settle=0)
    calls_at_start = fake.calls + 1  # the one at construction, then the one at start
    async with memory as same:
        assert same is memory and memory.sampling
        assert fake.calls == calls_at_start
        await seen.wait()  # the timer kept sampling
    assert not memory.sampling
    stopped_at = fake.calls
    await asyncio.sleep(0.005)
    assert fake.calls == stopped_at
    memory.start()
    memory.start()  # idempotent
    assert fake.calls == stopped_at + 1
    await memory.aclose()
    memory.close()  # idempotent


async def test_a_failing_sampler_is_logged_and_leaves_the_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = {"calls": 0}
    done = asyncio.Event()

    def sampler() -> float:
        state["calls"] += 1
        if state["calls"] == 2:
            raise OSError("no /proc")
        if state["calls"] >= 3:
            done.set()
        return 95.0 if state["calls"] >= 3 else 10.0

    cpu = CpuCapacitySource(90, interval=0.001, sampler=sampler)
    with caplog.at_level(logging.ERROR, logger="pullpush.capacity"):
        async with cpu:
            await done.wait()
    assert "sampling failed" in caplog.text and "no /proc" in caplog.text
    assert not cpu.is_open  # the timer went on after the failure


async def test_a_failing_first_sample_fails_start_and_starts_nothing() -> None:
    def sampler() -> float:
        raise OSError("no /proc")

    cpu = CpuCapacitySource(sampler=sampler)
    with pytest.raises(OSError, match="no /proc"):
        cpu.start()
    assert not cpu.sampling


def test_a_bad_sample_raises_and_changes_nothing() -> None:
    fake = FakeMemory(3000)
    memory = MemoryCapacitySource(0, sampler=fake, settle=0)
    fake.available = -5
    with pytest.raises(ValueError, match="must not be negative"):
        memory.sample_now()
    assert memory.limits == {"memory_mb": 3000}
    cpu = CpuCapacitySource(sampler=lambda: float("nan"))
    with pytest.raises(ValueError, match="cpu sample must be finite"):
        cpu.sample_now()
    assert cpu.cpu_percent is None


def test_start_needs_a_running_loop() -> None:
    memory = MemoryCapacitySource(0, sampler=FakeMemory(1), settle=0)
    with pytest.raises(RuntimeError):
        memory.start()
    assert not memory.sampling


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MemoryCapacitySource(17_000, sampler=FakeMemory(1)), "reserve_mb .* above total"),
        (lambda: MemoryCapacitySource(-1, sampler=FakeMemory(1)), "reserve_mb must be >= 0"),
        (lambda: MemoryCapacitySource(0, interval=0, sampler=FakeMemory(1)), "interval"),
        (lambda: MemoryCapacitySource(0, interval=-1, sampler=FakeMemory(1)), "interval"),
        (lambda: CpuCapacitySource(-1, sampler=FakeCpu([0])), "target"),
        (lambda: CpuCapacitySource(101, sampler=FakeCpu([0])), "target"),
        (lambda: CpuCapacitySource(80, hysteresis=-1, sampler=FakeCpu([0])), "hysteresis"),
        (lambda: CpuCapacitySource(5, hysteresis=10, sampler=FakeCpu([0])), "hysteresis"),
        (lambda: CpuCapacitySource(80, interval=0, sampler=FakeCpu([0])), "interval"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_parameter(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_repr_shows_the_live_numbers() -> None:
    memory = MemoryCapacitySource(100, sampler=FakeMemory(1100), settle=0)
    assert repr(memory) == (
        "<MemoryCapacitySource limit=1000 MiB in_use=0 MiB reserve=100 MiB waiting=0>"
    )
    cpu = CpuCapacitySource(80, sampler=FakeCpu([90]))
    cpu.sample_now()
    assert (
        repr(cpu) == "<CpuCapacitySource closed cpu=90.0% target=80.0% hysteresis=10.0 waiting=0>"
    )


# -- real psutil ------------------------------------------------------------------------


async def test_real_psutil_readings_drive_the_limits() -> None:
    import psutil

    async with MemoryCapacitySource(0, interval=0.05, settle=0) as memory:
        sample = memory.last_sample
        assert 0 < sample.available_mb <= sample.total_mb
        assert sample.total_mb == pytest.approx(psutil.virtual_memory().total / 2**20)
        assert memory.limits["memory_mb"] == int(sample.available_mb)
        assert await memory.acquire({"memory_mb": 1}) is not None
        memory.release({"memory_mb": 1})
    async with CpuCapacitySource(100, hysteresis=0) as cpu:
        percent = cpu.sample_now()
        assert 0 <= percent <= 100 and cpu.is_open  # a target of 100 never closes


async def test_a_hierarchical_runner_under_a_memory_parent_runs_what_fits() -> None:
    memory = MemoryCapacitySource(1000, sampler=FakeMemory(2500), settle=0)  # 1500 MiB headroom
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
    running = peak = 0

    async def task() -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return peak

    envelopes = await collect(HierarchicalTaskPoolRunner("mem", [task] * 10, pool).run_tasks())
    assert len(envelopes) == 10 and peak == 3  # 3 x 500 MiB fit, not 8
    assert (pool.in_use, memory.in_use) == (0, {"memory_mb": 0})


async def test_memory_admitted_a_moment_ago_is_not_admitted_twice() -> None:
    # A task that has just started has not allocated yet: the sample still shows its
    # memory as available. Within ``settle`` seconds it is subtracted from the headroom.
    clock = ManualClock(0)
    fake = FakeMemory(3000)
    memory = MemoryCapacitySource(1000, sampler=fake, clock=clock, settle=2.0)
    await memory.acquire({"memory_mb": 1500})
    memory.sample_now()  # the task has not allocated yet: available is still 3000
    assert memory.available == {"memory_mb": 500}  # not 2000: no double counting
    clock.advance(2.5)
    fake.available = 1500  # now it has
    memory.sample_now()
    assert memory.available == {"memory_mb": 500}
