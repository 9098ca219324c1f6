"""A unit-counting CapacitySource under a ResourceCapacitySource parent (``cost=``):
atomic across both kinds of level, FIFO, no lost wake-ups, cancellation-safe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pullpush import (
    AcquireTimeoutError,
    CapacitySource,
    OverReleaseError,
    ResourceCapacitySource,
    UntrackedResourceWarning,
)
from pullpush.testing import assert_no_pending_tasks, settle


async def _queued(cap: CapacitySource) -> asyncio.Task[int]:
    task = asyncio.create_task(cap.acquire())
    await asyncio.sleep(0)
    assert not task.done()
    return task


async def test_a_unit_takes_its_cost_at_the_resource_parent_and_above() -> None:
    root = ResourceCapacitySource({"memory_mb": 4000, "gpu": 1})
    memory = ResourceCapacitySource({"memory_mb": 1500}, parent=root)
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
    assert pool.cost == {"memory_mb": 500}
    assert await pool.acquire() == 7
    assert pool.try_acquire()
    assert pool.acquire_nowait()
    assert (pool.in_use, memory.in_use, root.in_use) == (
        3,
        {"memory_mb": 1500},
        {
            "memory_mb": 1500,
            "gpu": 0,
        },
    )
    # The parent is out of memory: nothing is taken at any level.
    assert pool.peek() is None
    refused = pool.try_acquire()
    assert not refused and refused.reason == "insufficient_capacity"
    assert (pool.in_use, memory.available, root.available["memory_mb"]) == (
        3,
        {"memory_mb": 0},
        2500,
    )
    for _ in range(3):
        pool.release()
    assert (pool.in_use, memory.available, root.available["memory_mb"]) == (
        0,
        {"memory_mb": 1500},
        4000,
    )


async def test_resource_parent_growth_serves_unit_waiters_in_fifo_order() -> None:
    memory = ResourceCapacitySource({"memory_mb": 500})
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
    await pool.acquire()
    first = await _queued(pool)
    second = await _queued(pool)
    third = await _queued(pool)
    memory.set_limits({"memory_mb": 1500})  # room for two more: served in order, at once
    # Granted in that same step (booked at both levels), the third still queued.
    assert (pool.in_use, pool.waiting, memory.in_use) == (3, 1, {"memory_mb": 1500})
    assert (await first, await second) == (6, 5)
    pool.release()
    assert await third == 5
    assert memory.in_use == {"memory_mb": 1500}
    for _ in range(3):
        pool.release()


async def test_a_release_elsewhere_under_the_parent_wakes_the_unit_waiter() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1000})
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 600})
    other = ResourceCapacitySource({"memory_mb": 1000}, parent=memory)
    await other.acquire({"memory_mb": 700})
    waiting = await _queued(pool)
    other.release({"memory_mb": 700})
    assert await waiting == 7
    assert memory.in_use == {"memory_mb": 600}
    pool.release()


async def test_oldest_waiter_across_kinds_of_level_is_served_first() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1000})
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 600})
    await memory.acquire({"memory_mb": 1000})
    unit = await _queued(pool)  # older
    direct = asyncio.create_task(memory.acquire({"memory_mb": 400}))
    await settle()
    memory.release({"memory_mb": 600})  # 600 free: the older unit waiter fits and goes first
    assert await unit == 7
    assert not direct.done()
    memory.release({"memory_mb": 400})
    assert await direct == {"memory_mb": 0}
    pool.release()
    memory.release({"memory_mb": 400})
    assert memory.in_use == {"memory_mb": 0}


async def test_a_unit_waiter_cancelled_after_its_grant_refunds_every_level() -> None:
    memory = ResourceCapacitySource({"memory_mb": 500})
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
    await pool.acquire()
    granted = await _queued(pool)
    pool.release()  # grants the unit (and 500 MiB) to `granted` ...
    granted.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await granted
    assert (pool.in_use, memory.in_use) == (0, {"memory_mb": 0})


async def test_a_cancelled_or_timed_out_unit_waiter_takes_nothing() -> None:
    memory = ResourceCapacitySource({"memory_mb": 0})
    pool = CapacitySource(8, parent=memory, cost={"memory_mb": 1})
    with pytest.raises(AcquireTimeoutError):
        await pool.acquire(timeout=0)
    doomed = await _queued(pool)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    assert (pool.in_use, pool.waiting, memory.in_use) == (0, 0, {"memory_mb": 0})


async def test_over_release_at_the_resource_parent_changes_no_level() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1000})
    pool = CapacitySource(2, parent=memory, cost={"memory_mb": 500})
    await pool.acquire()
    memory.release({"memory_mb": 500})  # gives back what the unit holds there
    with pytest.raises(OverReleaseError, match="ancestor"):
        pool.release()
    assert (pool.in_use, memory.in_use) == (1, {"memory_mb": 0})


async def test_bridges_compose_through_unit_levels() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1000})
    outer = CapacitySource(4, parent=memory, cost={"memory_mb": 400})
    inner = CapacitySource(4, parent=outer)
    await inner.acquire()
    await inner.acquire()
    assert (inner.in_use, outer.in_use, memory.in_use) == (2, 2, {"memory_mb": 800})
    assert not inner.try_acquire()
    inner.release()
    assert inner.try_acquire()
    inner.release()
    inner.release()
    assert memory.in_use == {"memory_mb": 0}


async def test_an_empty_cost_is_limited_by_units_only() -> None:
    memory = ResourceCapacitySource({"memory_mb": 0})
    pool = CapacitySource(1, parent=memory, cost={})
    assert await pool.acquire() == 0
    pool.release()


def test_cost_is_required_under_a_resource_parent_and_refused_otherwise() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1})
    with pytest.raises(TypeError, match="cost= is required"):
        CapacitySource(1, parent=memory)
    with pytest.raises(TypeError, match="cost= is only for a ResourceCapacitySource"):
        CapacitySource(1, parent=CapacitySource(1), cost={"memory_mb": 1})
    with pytest.raises(TypeError, match="cost= is only"):
        CapacitySource(1, cost={"memory_mb": 1})
    with pytest.raises(ValueError, match=r"cost\['memory_mb'\] must be a finite number >= 0"):
        CapacitySource(1, parent=memory, cost={"memory_mb": -1})
    assert CapacitySource(1).cost is None


def test_a_cost_key_no_parent_level_tracks_warns() -> None:
    memory = ResourceCapacitySource({"memory_mb": 1})
    with pytest.warns(UntrackedResourceWarning, match="'gpu'"):
        CapacitySource(1, parent=memory, cost={"gpu": 1})


# -- property: mixed hierarchies keep exact books ---------------------------------------


def _no_servable_waiter(levels: list[Any]) -> None:
    for level in levels:
        if level._waiters:
            head = next(iter(level._waiters))
            assert not level._chain_fits(head.cost), f"{level!r} has a servable waiter"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    root_limit=st.integers(0, 6),
    unit_costs=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    unit_limits=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    script=st.lists(
        st.one_of(
            st.tuples(st.just("acquire"), st.integers(0, 2), st.sampled_from([None, None, 0])),
            st.tuples(st.just("release"), st.integers(0, 20)),
            st.tuples(st.just("release_then_cancel"), st.integers(0, 20)),
            st.tuples(st.just("cancel"), st.integers(0, 20)),
            st.tuples(st.just("grow"), st.integers(1, 3)),
            st.tuples(st.just("step"), st.integers(1, 2)),
        ),
        max_size=40,
    ),
)
def test_mixed_hierarchy_never_exceeds_a_limit_and_returns_everything(
    root_limit: int,
    unit_costs: tuple[int, int],
    unit_limits: tuple[int, int],
    script: list[tuple[Any, ...]],
) -> None:
    async def main() -> None:
        root = ResourceCapacitySource({"m": root_limit})
        pools = [
            CapacitySource(unit_limits[i], parent=root, cost={"m": unit_costs[i]}) for i in (0, 1)
        ]
        direct = ResourceCapacitySource({"m": 2}, parent=root)
        tasks: list[tuple[int, asyncio.Task[Any]]] = []
        released: set[int] = set()

        def held() -> list[tuple[int, asyncio.Task[Any]]]:
            return [
                (i, t)
                for i, t in tasks
                if t.done()
                and not t.cancelled()
                and t.exception() is None
                and id(t) not in released
            ]

        def give_back(k: int) -> None:
            now = held()
            if now:
                i, task = now[k % len(now)]
                pools[i].release() if i < 2 else direct.release({"m": 1})
                released.add(id(task))

        def check() -> None:
            now = held()
            counts = [sum(1 for i, _ in now if i == j) for j in (0, 1, 2)]
            assert [p.in_use for p in pools] == counts[:2]
            expected = counts[0] * unit_costs[0] + counts[1] * unit_costs[1] + counts[2]
            assert root.in_use == {"m": expected}
            assert root.in_use["m"] <= root.limits["m"]

        for op in script:
            kind = op[0]
            if kind == "acquire":
                i = op[1]
                coro = pools[i].acquire(op[2]) if i < 2 else direct.acquire({"m": 1}, op[2])
                tasks.append((i, asyncio.create_task(coro)))
            elif kind == "release":
                give_back(op[1])
            elif kind == "release_then_cancel":
                give_back(op[1])
                for _, task in tasks:
                    if not task.done():
                        task.cancel()
                        break
            elif kind == "cancel":
                pending = [t for _, t in tasks if not t.done()]
                if pending:
                    pending[op[1] % len(pending)].cancel()
            elif kind == "grow":
                root.set_limits({"m": root.limits["m"] + op[1]})
            else:
                for _ in range(op[1]):
                    await asyncio.sleep(0)
                _no_servable_waiter([*pools, direct])
        await settle()
        check()
        _no_servable_waiter([*pools, direct])
        for _, task in tasks:
            task.cancel()
        await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
        for i, task in held():
            pools[i].release() if i < 2 else direct.release({"m": 1})
            released.add(id(task))
        assert root.in_use == {"m": 0} and [p.in_use for p in pools] == [0, 0]
        assert not root._queued
        await assert_no_pending_tasks()

    for new_loop in (asyncio.new_event_loop, uvloop.new_event_loop):
        loop = new_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
