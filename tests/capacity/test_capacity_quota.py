"""QuotaCapacitySource: consumed budgets refilled by timers; release restores nothing here."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from pullpush import (
    OverReleaseError,
    PrioritySourceObj,
    QuotaCapacitySource,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
)
from pullpush.testing import settle


def test_release_restores_nothing_at_the_quota() -> None:
    quota = QuotaCapacitySource({"req": 2})
    quota.acquire_immediate({"req": 1})
    quota.release({"req": 1})
    assert quota.available == {"req": 1}
    assert quota.in_use == {"req": 0}


def test_release_still_checks_what_was_acquired() -> None:
    quota = QuotaCapacitySource({"req": 2})
    with pytest.raises(OverReleaseError):
        quota.release({"req": 1})


def test_rate_limit_over_a_pool_restores_the_pool_only() -> None:
    quota = QuotaCapacitySource({"req": 10})
    pool = ResourceCapacitySource({"req": 2}, quota)
    pool.acquire_immediate({"req": 1})
    pool.release({"req": 1})
    assert (pool.available, quota.available) == ({"req": 2}, {"req": 9})


def test_pool_above_a_quota_gets_its_capacity_back() -> None:
    pool = ResourceCapacitySource({"req": 2})
    quota = QuotaCapacitySource({"req": 10}, pool)
    quota.acquire_immediate({"req": 2})
    quota.release({"req": 2})
    assert (pool.available, quota.available) == ({"req": 2}, {"req": 8})


def test_lowering_a_limit_clamps_at_zero() -> None:
    quota = QuotaCapacitySource({"req": 10})
    quota.acquire_immediate({"req": 8})
    quota.set_limits({"req": 5})
    quota.increment({"req": 1})
    assert quota.available == {"req": 1}


def test_reconcile_returns_an_unused_estimate() -> None:
    quota = QuotaCapacitySource({"tok": 100})
    quota.acquire_immediate({"tok": 50})
    quota.reconcile({"tok": 50}, {"tok": 20})
    quota.release({"tok": 20})
    assert quota.available == {"tok": 80}


async def test_tick_runs_the_periodic_reset() -> None:
    quota = QuotaCapacitySource({"req": 3})
    quota.acquire_immediate({"req": 3})
    quota.start_periodic_reset(3600.0)
    assert quota.timer_running
    quota.tick()
    assert quota.available == {"req": 3}
    quota.stop_timer()


async def test_tick_runs_the_periodic_increment_capped_at_the_limits() -> None:
    quota = QuotaCapacitySource({"tok": 5})
    quota.acquire_immediate({"tok": 5})
    quota.start_periodic_increment(3600.0, {"tok": 2})
    quota.tick()
    assert quota.available == {"tok": 2}
    for _ in range(3):
        quota.tick()
    assert quota.available == {"tok": 5}
    await quota.aclose()
    assert not quota.timer_running


async def test_waiter_on_an_exhausted_quota_wakes_on_a_tick() -> None:
    quota = QuotaCapacitySource({"req": 1})
    quota.acquire_immediate({"req": 1})
    quota.start_periodic_reset(3600.0)
    task = asyncio.create_task(quota.acquire({"req": 1}))
    await settle()
    quota.release({"req": 1})  # restores nothing: still waiting
    await settle()
    assert not task.done()
    quota.tick()
    assert await task == {"req": 0}
    quota.close()


async def test_the_timer_refills_on_the_event_loop() -> None:
    quota = QuotaCapacitySource({"tok": 1})
    quota.acquire_immediate({"tok": 1})
    quota.start_periodic_increment(0.001, {"tok": 1})
    assert await quota.acquire({"tok": 1}) == {"tok": 0}
    quota.stop_timer()


async def test_starting_a_timer_replaces_the_previous_one_and_stop_is_idempotent() -> None:
    quota = QuotaCapacitySource({"tok": 4})
    quota.acquire_immediate({"tok": 4})
    quota.start_periodic_increment(3600.0, {"tok": 1})
    quota.start_periodic_reset(3600.0)
    quota.tick()
    assert quota.available == {"tok": 4}  # the reset, not the increment
    quota.stop_timer()
    quota.stop_timer()
    quota.tick()  # no timer: nothing to do
    assert not quota.timer_running


async def test_bad_timer_arguments() -> None:
    quota = QuotaCapacitySource({"tok": 4})
    with pytest.raises(ValueError, match="interval"):
        quota.start_periodic_reset(0)
    with pytest.raises(ValueError, match=r"amount\['tok'\]"):
        quota.start_periodic_increment(1.0, {"tok": -1})
    assert not quota.timer_running


def test_timers_need_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        QuotaCapacitySource({"tok": 1}).start_periodic_reset(1.0)


# -- a ScheduledTaskPoolRunner gated by a quota ---------------------------------------------


def quota_task(key: str, ran: list[str], cost: float = 1) -> ScheduledTask[str]:
    async def run() -> str:
        ran.append(key)
        return key

    return ScheduledTask(key, run, {"req": cost})


async def consume(stream: Any, into: list[TaskProgressEnvelope]) -> None:
    async with contextlib.aclosing(stream) as envelopes:
        async for envelope in envelopes:
            into.append(envelope)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backfill", [0, 1])
async def test_fix_a_runner_gated_by_an_exhausted_quota_runs_everything_after_resets(
    backfill: int,
) -> None:
    # Found by issue 13: quota 2, four tasks; after the reset q2 ran and q3 never did.
    # The runner waited for the head's cost by acquiring and releasing it, and a
    # quota's release restores nothing: every wait consumed a unit for nobody.
    quota = QuotaCapacitySource({"req": 2})
    ran: list[str] = []
    runner = ScheduledTaskPoolRunner(
        "quota", [quota_task(f"q{i}", ran) for i in range(4)], quota, backfill=backfill
    )
    envelopes: list[TaskProgressEnvelope] = []
    consumer = asyncio.create_task(consume(runner.run_tasks(), envelopes))
    await settle(20)
    assert ran == ["q0", "q1"] and quota.available == {"req": 0}
    assert len(envelopes) == 2 and not consumer.done()  # waiting on the quota
    quota.reset()
    await asyncio.wait_for(consumer, 10)
    assert ran == ["q0", "q1", "q2", "q3"]
    assert sorted(e.key for e in envelopes if e.type.value == "FINAL") == ran
    assert quota.available == {"req": 0} and quota.in_use == {"req": 0}
    assert quota.waiting == 0


@pytest.mark.timeout(30)
async def test_fix_waiting_for_the_quota_consumes_nothing_beyond_the_tasks() -> None:
    # Three windows of two: each reset admits exactly two more tasks, and the quota
    # consumed in a window is exactly what the tasks started in it cost.
    quota = QuotaCapacitySource({"req": 2})
    ran: list[str] = []
    runner = ScheduledTaskPoolRunner("windows", [quota_task(f"t{i}", ran) for i in range(6)], quota)
    envelopes: list[TaskProgressEnvelope] = []
    consumer = asyncio.create_task(consume(runner.run_tasks(), envelopes))
    for window in range(3):
        await settle(20)
        assert len(ran) == 2 * (window + 1), ran
        assert quota.available == {"req": 0}
        if window < 2:
            assert quota.waiting == 1  # the runner queues for the next head's cost
            quota.reset()
    await asyncio.wait_for(consumer, 10)
    assert [e.type.value for e in envelopes] == ["FINAL"] * 6
    quota.reset()
    assert quota.available == {"req": 2}


@pytest.mark.timeout(30)
async def test_fix_a_head_that_changes_while_waiting_gives_the_quota_back() -> None:
    # The runner queues for the head's cost; when granted, a dynamic source hands
    # over another task (a more important one arrived): the cost held for the old
    # head goes back unused, the quota included, and the new head is admitted.
    quota = QuotaCapacitySource({"req": 2})
    ran: list[str] = []
    source: PrioritySourceObj[ScheduledTask[str]] = PrioritySourceObj()
    source.enqueue(quota_task("first", ran), 5)
    source.enqueue(quota_task("big", ran, cost=2), 1)
    runner = ScheduledTaskPoolRunner("dynamic", source, quota)
    envelopes: list[TaskProgressEnvelope] = []
    consumer = asyncio.create_task(consume(runner.run_tasks(), envelopes))
    await settle(20)
    assert ran == ["first"] and quota.waiting == 1  # "big" needs 2, 1 is left
    source.enqueue(quota_task("urgent", ran), 10)
    quota.reset()  # grants "big"'s 2 to the runner, which then takes "urgent"
    await settle(20)
    assert ran == ["first", "urgent"]
    assert quota.available == {"req": 1}  # 2 given back, 1 consumed by "urgent"
    assert quota.waiting == 1  # "big" waits again
    quota.reset()
    source.close_source()
    await asyncio.wait_for(consumer, 10)
    assert ran == ["first", "urgent", "big"]
    assert quota.available == {"req": 0} and quota.in_use == {"req": 0}
    assert [e.type.value for e in envelopes] == ["FINAL"] * 3


@pytest.mark.timeout(30)
async def test_cancelling_a_runner_waiting_on_the_quota_consumes_nothing() -> None:
    quota = QuotaCapacitySource({"req": 1})
    ran: list[str] = []
    runner = ScheduledTaskPoolRunner("cancel", [quota_task(f"c{i}", ran) for i in range(3)], quota)
    envelopes: list[TaskProgressEnvelope] = []
    consumer = asyncio.create_task(consume(runner.run_tasks(), envelopes))
    await settle(20)
    assert ran == ["c0"] and quota.waiting == 1
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert quota.waiting == 0 and quota.available == {"req": 0}
    quota.reset()
    assert quota.available == {"req": 1} and quota.in_use == {"req": 0}
