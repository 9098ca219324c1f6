"""QuotaCapacitySource: consumed budgets refilled by timers; release restores nothing here."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import OverReleaseError, QuotaCapacitySource, ResourceCapacitySource
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
