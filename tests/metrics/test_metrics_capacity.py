"""DefaultCapacityMetricsCollector on real capacity sources (FEATURES 2.15, C9)."""

from __future__ import annotations

import asyncio

from pullpush import (
    CapacityMetricsCollector,
    CapacityTotals,
    DefaultCapacityMetricsCollector,
    MemoryCapacitySource,
    MemorySample,
    QuotaCapacitySource,
    ResourceCapacitySource,
    RollingWindowStats,
    ScheduledTask,
    ScheduledTaskPoolRunner,
)
from pullpush.testing import ManualClock, collect, settle


def _pair(
    limits: dict[str, float], window: float = 60.0
) -> tuple[ManualClock, DefaultCapacityMetricsCollector, ResourceCapacitySource]:
    clock = ManualClock()
    collector = DefaultCapacityMetricsCollector(window, clock)
    return clock, collector, ResourceCapacitySource(limits, metrics=collector, clock=clock)


def test_it_is_a_capacity_metrics_collector_and_starts_empty() -> None:
    collector = DefaultCapacityMetricsCollector(clock=ManualClock(3))
    assert isinstance(collector, CapacityMetricsCollector)
    snap = collector.snapshot()
    assert snap.captured_at == 3
    assert snap.totals == CapacityTotals(0, 0, 0, 0, 0, 0, 0)
    assert snap.in_flight_by_resource == {} and snap.utilization_by_resource == {}
    assert snap.rates.release_per_sec == RollingWindowStats(60.0, 0, 0, 0, None, None)


async def test_every_acquire_path_counts_and_in_flight_is_acquired_minus_released() -> None:
    _, collector, source = _pair({"cpu": 4, "mem": 100})
    source.try_acquire({"cpu": 1, "mem": 10})
    source.acquire_immediate({"cpu": 1})
    await source.acquire({"mem": 30})
    source.release({"cpu": 1})
    snap = collector.snapshot()
    assert snap.totals.acquire_accepted == 3
    assert snap.totals.release == 1
    assert snap.totals.set_limits == 1  # the construction event
    assert snap.in_flight_by_resource == {"cpu": 1, "mem": 40}
    assert snap.utilization_by_resource == {"cpu": 0.25, "mem": 0.4}


def test_requested_rejected_counts_only_insufficient_capacity() -> None:
    _, collector, source = _pair({"cpu": 1})
    source.try_acquire({"cpu": 3})
    source.try_acquire({"cpu": 2})
    source.try_acquire({"cpu": -1})  # invalid_cost: counted as a rejection only
    snap = collector.snapshot()
    assert snap.totals.acquire_rejected == 3
    assert snap.requested_rejected_by_resource == {"cpu": 5}


def test_rates_observe_one_per_event_over_the_window() -> None:
    clock, collector, source = _pair({"cpu": 10}, window=10.0)
    for _ in range(4):
        source.try_acquire({"cpu": 1})
    clock.advance(6)
    source.release({"cpu": 1})
    source.try_acquire({"cpu": 20})
    rates = collector.snapshot().rates
    assert (rates.acquire_accepted_per_sec.count, rates.acquire_accepted_per_sec.rate) == (4, 0.4)
    assert rates.release_per_sec.count == rates.acquire_rejected_per_sec.count == 1
    clock.advance(5)  # the four acquires (at 0) left the window; the rest (at 6) did not
    rates = collector.snapshot().rates
    assert rates.acquire_accepted_per_sec.count == 0
    assert rates.release_per_sec.count == 1


def test_reset_increment_set_limits_and_reconcile_are_counted() -> None:
    collector = DefaultCapacityMetricsCollector()
    quota = QuotaCapacitySource({"requests": 10}, metrics=collector)
    quota.acquire_immediate({"requests": 4})
    quota.reconcile({"requests": 4}, {"requests": 3})
    quota.increment({"requests": 1})
    quota.set_limits({"requests": 20})
    quota.reset()
    snap = collector.snapshot()
    assert snap.totals == CapacityTotals(1, 0, 0, 1, 1, 2, 1)
    assert snap.in_flight_by_resource == {"requests": 3}
    assert snap.utilization_by_resource == {"requests": 0.0}  # refilled


async def test_a_measured_memory_source_reports_its_limit_changes() -> None:
    available = [3000.0]
    collector = DefaultCapacityMetricsCollector()
    memory = MemoryCapacitySource(
        1000, sampler=lambda: MemorySample(available[0], 8000), metrics=collector, settle=0
    )
    await memory.acquire({"memory_mb": 500})
    available[0] = 2500
    memory.sample_now()  # the same headroom beyond what is in use: no change
    available[0] = 4000
    memory.sample_now()
    snap = collector.snapshot()
    assert snap.totals.set_limits == 2
    assert snap.utilization_by_resource == {"memory_mb": 500 / 3500}
    memory.release({"memory_mb": 500})


async def test_runner_with_metrics_counts_two_accepted_acquires() -> None:
    # FEATURES 2.15 / decision C9: the runner-plus-metrics example expects 2.
    collector = DefaultCapacityMetricsCollector()
    capacity = ResourceCapacitySource({"capacity": 2}, metrics=collector)

    async def job() -> str:
        await asyncio.sleep(0)
        return "done"

    tasks = [ScheduledTask("a", job), ScheduledTask("b", job)]
    envelopes = await collect(ScheduledTaskPoolRunner("metered", tasks, capacity).run_tasks())
    await settle()
    assert [e.value for e in envelopes] == ["done", "done"]
    snap = collector.snapshot()
    assert (snap.totals.acquire_accepted, snap.totals.release) == (2, 2)
    assert snap.in_flight_by_resource == {"capacity": 0}


def test_a_collector_reset_forgets_everything() -> None:
    _, collector, source = _pair({"cpu": 1})
    source.try_acquire({"cpu": 1})
    collector.reset()
    assert collector.snapshot().totals == CapacityTotals(0, 0, 0, 0, 0, 0, 0)
    assert "accepted=0" in repr(collector)
