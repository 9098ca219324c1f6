"""ResourceCapacitySource: multi-resource costs, atomic across the chain, every method."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from pullpush import (
    AcquireTimeoutError,
    InsufficientCapacityError,
    OverReleaseError,
    ResourceCapacitySource,
    UntrackedResourceWarning,
)
from pullpush.testing import ManualClock, settle


def _pool(**limits: float) -> ResourceCapacitySource:
    return ResourceCapacitySource(limits)


def test_limits_and_available_are_copies() -> None:
    cap = _pool(cpu=4, mem=100)
    cap.available["cpu"] = 0
    cap.limits["cpu"] = 0
    assert cap.available == {"cpu": 4, "mem": 100} == cap.limits


def test_can_acquire_then_acquire_immediate() -> None:
    cap = _pool(cpu=4, mem=100)
    assert cap.can_acquire({"cpu": 3, "mem": 100})
    cap.acquire_immediate({"cpu": 3, "mem": 100})
    assert cap.available == {"cpu": 1, "mem": 0}
    assert not cap.can_acquire({"cpu": 1, "mem": 1})


def test_acquire_immediate_without_room_raises_and_takes_nothing() -> None:
    cap = _pool(cpu=1, mem=10)
    with pytest.raises(InsufficientCapacityError, match="'mem': need 11"):
        cap.acquire_immediate({"cpu": 1, "mem": 11})
    assert cap.available == {"cpu": 1, "mem": 10}


def test_child_acquire_takes_at_the_parent_too_or_nowhere() -> None:
    parent = _pool(cpu=2)
    child = ResourceCapacitySource({"cpu": 4, "io": 1}, parent)
    assert child.try_acquire({"cpu": 2, "io": 1})
    assert parent.available == {"cpu": 0}
    result = child.try_acquire({"cpu": 1})
    assert not result and result.reason == "insufficient_capacity"
    assert child.available == {"cpu": 2, "io": 0}
    with pytest.raises(InsufficientCapacityError, match="ancestor"):
        child.acquire_immediate({"cpu": 1})


def test_keys_not_tracked_locally_are_checked_at_the_parent() -> None:
    parent = _pool(gpu=1)
    child = ResourceCapacitySource({"cpu": 4}, parent)
    child.acquire_immediate({"cpu": 1, "gpu": 1})
    assert not child.can_acquire({"gpu": 1})
    assert child.available == {"cpu": 3}


def test_cost_tracked_nowhere_warns_once_per_key_at_the_callers_line() -> None:
    cap = _pool(slots=4)
    with pytest.warns(UntrackedResourceWarning, match="'capacity' is tracked by no level") as seen:
        assert cap.can_acquire({"capacity": 1})
    cap.acquire_immediate({"capacity": 1})  # no second warning (they are errors here)
    with pytest.warns(UntrackedResourceWarning, match="'gpu'") as seen_too:
        cap.acquire_immediate({"gpu": 1})
    assert [w.filename for w in (*seen, *seen_too)] == [__file__, __file__]
    assert cap.available == {"slots": 4}


@pytest.mark.parametrize("cost", [{"cpu": -1}, {"cpu": float("nan")}, {"cpu": float("inf")}])
def test_invalid_cost_is_refused_or_raises_naming_the_resource(cost: dict[str, float]) -> None:
    cap = _pool(cpu=4)
    assert not cap.can_acquire(cost)
    assert not cap.validate_cost(cost)
    result = cap.try_acquire(cost)
    assert not result and result.reason == "invalid_cost"
    with pytest.raises(ValueError, match=r"cost\['cpu'\] must be a finite number >= 0"):
        cap.acquire_immediate(cost)
    with pytest.raises(ValueError, match="cpu"):
        cap.release(cost)


@pytest.mark.parametrize(
    ("limits", "error", "match"),
    [
        ({"cpu": -1}, ValueError, r"limits\['cpu'\] must be a finite number >= 0"),
        ([("cpu", 1)], TypeError, "limits must be a mapping"),
        ({"cpu": "2"}, TypeError, r"limits\['cpu'\] must be a number"),
        ({1: 2}, TypeError, "resource names"),
    ],
)
def test_bad_limits_name_what_was_wrong(limits: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ResourceCapacitySource(limits)  # type: ignore[arg-type]


def test_bad_parent_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="parent must be a ResourceCapacitySource"):
        ResourceCapacitySource({"a": 1}, object())  # type: ignore[arg-type]


def test_release_returns_the_cost_at_every_level() -> None:
    parent = _pool(cpu=4)
    child = ResourceCapacitySource({"cpu": 2}, parent)
    child.acquire_immediate({"cpu": 2})
    child.release({"cpu": 1})
    assert (child.available, parent.available) == ({"cpu": 1}, {"cpu": 3})
    assert child.in_use == {"cpu": 1}


def test_over_release_raises_and_changes_nothing() -> None:
    parent = _pool(cpu=4)
    child = ResourceCapacitySource({"cpu": 4}, parent)
    child.acquire_immediate({"cpu": 1})
    with pytest.raises(OverReleaseError, match="release of 'cpu'=2 but only 1 in use"):
        child.release({"cpu": 2})
    assert (child.in_use, parent.in_use) == ({"cpu": 1}, {"cpu": 1})


def test_float_costs_do_not_strand_capacity() -> None:
    cap = _pool(cpu=1.0)
    cap.acquire_immediate({"cpu": 0.3})
    cap.release({"cpu": 0.1})
    cap.release({"cpu": 0.2})
    for _ in range(10):
        cap.acquire_immediate({"cpu": 0.1})
    assert not cap.can_acquire({"cpu": 0.1})


def test_utilization_per_resource() -> None:
    cap = _pool(cpu=4, mem=0)
    cap.acquire_immediate({"cpu": 1})
    assert cap.utilization == {"cpu": 0.25, "mem": 0.0}


def test_peek_is_the_least_per_resource_along_the_chain() -> None:
    parent = _pool(cpu=2, gpu=1)
    child = ResourceCapacitySource({"cpu": 4, "mem": 10}, parent)
    assert child.peek() == {"cpu": 2, "mem": 10, "gpu": 1}
    child.acquire_immediate({"gpu": 1})
    assert child.peek() is None


def test_validate_cost_checks_limits_up_the_chain() -> None:
    parent = _pool(cpu=2)
    child = ResourceCapacitySource({"cpu": 4}, parent)
    child.acquire_immediate({"cpu": 2})
    assert child.validate_cost({"cpu": 2})  # possible later, if not now
    assert not child.validate_cost({"cpu": 3})


def test_reset_refills_and_can_set_limits_first() -> None:
    cap = _pool(req=10)
    cap.acquire_immediate({"req": 10})
    cap.reset()
    assert cap.available == {"req": 10}
    cap.reset({"req": 5, "new": 2})
    assert cap.available == {"req": 5, "new": 2} == cap.limits


def test_increment_is_capped_and_ignores_untracked_keys() -> None:
    cap = _pool(tok=10)
    cap.acquire_immediate({"tok": 10})
    cap.increment({"tok": 4, "other": 1})
    assert cap.available == {"tok": 4}
    cap.increment({"tok": 4}, cap={"tok": 6})
    assert cap.available == {"tok": 6}
    cap.increment({"tok": 100})
    assert cap.available == {"tok": 10}
    with pytest.raises(ValueError, match=r"amount\['tok'\]"):
        cap.increment({"tok": -1})


def test_set_limits_is_partial_and_adds_keys() -> None:
    cap = _pool(cpu=4, mem=10)
    cap.acquire_immediate({"cpu": 1})
    cap.set_limits({"cpu": 6, "gpu": 2})
    assert cap.limits == {"cpu": 6, "mem": 10, "gpu": 2}
    assert cap.available == {"cpu": 5, "mem": 10, "gpu": 2}
    with pytest.raises(ValueError, match=r"limits\['gpu'\]"):
        cap.set_limits({"cpu": 1, "gpu": -1})
    assert cap.limits["cpu"] == 6  # nothing changed


def test_lowered_limit_is_a_debt_paid_back_by_releases() -> None:
    cap = _pool(cpu=10)
    cap.acquire_immediate({"cpu": 8})
    cap.set_limits({"cpu": 5})
    assert cap.available == {"cpu": 0}
    cap.release({"cpu": 3})
    assert cap.available == {"cpu": 0}  # 5 in use under a limit of 5
    cap.release({"cpu": 1})
    assert cap.available == {"cpu": 1}


def test_reconcile_gives_back_a_surplus_and_takes_a_deficit_at_every_level() -> None:
    parent = _pool(tok=100)
    child = ResourceCapacitySource({"tok": 50}, parent)
    child.acquire_immediate({"tok": 40})
    child.reconcile({"tok": 40}, {"tok": 25})
    assert (child.available, parent.available) == ({"tok": 25}, {"tok": 75})
    child.reconcile({"tok": 25}, {"tok": 30})
    assert (child.in_use, parent.in_use) == ({"tok": 30}, {"tok": 30})
    child.release({"tok": 30})
    assert (child.available, parent.available) == ({"tok": 50}, {"tok": 100})


def test_reconcile_of_an_estimate_never_acquired_raises() -> None:
    cap = _pool(tok=10)
    with pytest.raises(OverReleaseError, match="reconcile"):
        cap.reconcile({"tok": 5}, {"tok": 1})
    assert cap.available == {"tok": 10}


async def test_awaited_acquire_waits_then_returns_the_budget_left() -> None:
    cap = _pool(cpu=2)
    cap.acquire_immediate({"cpu": 2})
    task = asyncio.create_task(cap.acquire({"cpu": 1}))
    await settle()
    assert not task.done() and cap.waiting == 1
    cap.release({"cpu": 2})
    assert await task == {"cpu": 1}


async def test_awaited_acquires_are_fifo_even_when_a_later_one_is_smaller() -> None:
    cap = _pool(cpu=4)
    cap.acquire_immediate({"cpu": 4})
    order: list[str] = []

    async def want(name: str, cpu: int) -> None:
        await cap.acquire({"cpu": cpu})
        order.append(name)

    big = asyncio.create_task(want("big", 3))
    small = asyncio.create_task(want("small", 1))
    await settle()
    cap.release({"cpu": 2})  # would fit "small", but "big" is first in line
    await settle()
    assert order == []
    assert not cap.try_acquire({"cpu": 1})  # nor may anyone barge past "big"
    cap.release({"cpu": 2})
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_timed_out_head_lets_the_next_waiter_in() -> None:
    cap = _pool(cpu=2)
    cap.acquire_immediate({"cpu": 1})
    big = asyncio.create_task(cap.acquire({"cpu": 2}, timeout=0))
    small = asyncio.create_task(cap.acquire({"cpu": 1}))
    with pytest.raises(AcquireTimeoutError):
        await big
    assert await small == {"cpu": 0}


async def test_set_limits_wakes_waiters_of_descendants() -> None:
    parent = _pool(cpu=0)
    child = ResourceCapacitySource({"cpu": 2}, parent)
    task = asyncio.create_task(child.acquire({"cpu": 1}))
    await settle()
    parent.set_limits({"cpu": 1})
    assert await task == {"cpu": 1}


async def test_wait_obj_of_a_child_is_signalled_by_the_parent() -> None:
    parent = _pool(cpu=1)
    child = ResourceCapacitySource({"cpu": 4}, parent)
    parent.acquire_immediate({"cpu": 1})
    waiting = asyncio.create_task(child.wait_obj.wait())
    await settle()
    parent.release({"cpu": 1})
    assert await waiting is True
    assert child.can_acquire({"cpu": 1})


def test_statistics_and_repr() -> None:
    clock = ManualClock()
    cap = ResourceCapacitySource({"cpu": 4}, clock=clock)
    cap.acquire_immediate({"cpu": 1})
    stats = cap.statistics()
    assert (stats.limits, stats.available, stats.in_use) == ({"cpu": 4}, {"cpu": 3}, {"cpu": 1})
    assert (stats.utilization, stats.waiting, stats.oldest_wait) == ({"cpu": 0.25}, 0, 0.0)
    assert repr(cap) == (
        "<ResourceCapacitySource limits={'cpu': 4} available={'cpu': 3} waiting=0>"
    )


def test_dropped_children_are_not_kept_alive_by_their_parent() -> None:
    parent = _pool(cpu=1)
    child = ResourceCapacitySource({"cpu": 1}, parent)
    assert child.wait_obj is child.wait_obj
    ref = weakref.ref(child)
    del child
    gc.collect()
    assert ref() is None
    parent.set_limits({"cpu": 2})  # signals nobody, safely
