"""CapacitySource: one unit per task, FIFO, atomic across the parent chain."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import AcquireTimeoutError, CapacitySource, OverReleaseError
from pullpush.testing import ManualClock, settle


async def _queued(cap: CapacitySource) -> asyncio.Task[int]:
    """Start an acquire that must wait, and let it join the queue."""
    task = asyncio.create_task(cap.acquire())
    await asyncio.sleep(0)
    assert not task.done()
    return task


async def test_acquire_returns_units_left_and_release_restores() -> None:
    cap = CapacitySource(2)
    assert await cap.acquire() == 1
    assert await cap.acquire() == 0
    assert (cap.available, cap.in_use, cap.limit) == (0, 2, 2)
    cap.release()
    assert cap.available == 1


async def test_firefoundry_aliases() -> None:
    cap = CapacitySource(3)
    await cap.acquire()
    assert (cap.max_capacity, cap.current_capacity) == (3, 2)


async def test_try_acquire_is_truthy_exactly_when_it_took_a_unit() -> None:
    cap = CapacitySource(1)
    first, second = cap.try_acquire(), cap.try_acquire()
    assert first and first.ok and first.available == 0 and first.available_after == 0
    assert not second and second.reason == "insufficient_capacity"
    assert second.available_after is None and second.requested == 1
    assert cap.in_use == 1


async def test_peek_gives_available_or_none() -> None:
    parent = CapacitySource(1)
    child = CapacitySource(5, parent)
    assert child.peek() == 5
    await parent.acquire()
    assert child.peek() is None  # the parent has nothing left
    assert parent.peek() is None


async def test_acquire_takes_a_unit_at_every_level() -> None:
    root = CapacitySource(30)
    a = CapacitySource(14, root)
    b = CapacitySource(14, root)
    c = CapacitySource(14, root)
    for _ in range(14):
        await a.acquire()
        await b.acquire()
    assert root.available == 2
    assert [c.try_acquire().ok for _ in range(3)] == [True, True, False]
    assert (root.in_use, c.in_use, c.available) == (30, 2, 12)


async def test_failed_try_acquire_takes_nothing_anywhere() -> None:
    root = CapacitySource(5)
    child = CapacitySource(1, root)
    await child.acquire()
    assert not child.try_acquire()
    assert (root.in_use, child.in_use) == (1, 1)


async def test_waiters_are_served_first_come_first_served() -> None:
    cap = CapacitySource(1)
    await cap.acquire()
    order: list[int] = []

    async def worker(n: int) -> None:
        await cap.acquire()
        order.append(n)

    tasks = [asyncio.create_task(worker(n)) for n in range(4)]
    await settle()
    for _ in range(4):
        cap.release()
        await settle()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert cap.in_use == 1


async def test_release_hands_the_unit_to_the_waiter_no_barging() -> None:
    cap = CapacitySource(1)
    await cap.acquire()
    task = await _queued(cap)
    cap.release()
    assert cap.in_use == 1  # already granted to the queued task
    assert not cap.try_acquire()
    assert cap.peek() is None
    assert await task == 0


async def test_try_acquire_fails_while_waiters_are_queued() -> None:
    root = CapacitySource(1)
    child = CapacitySource(1, root)
    await root.acquire()
    task = await _queued(child)
    assert not child.try_acquire()
    root.release()
    assert await task == 0


async def test_parent_release_wakes_a_waiter_held_back_by_the_parent() -> None:
    root = CapacitySource(1)
    child = CapacitySource(3, root)
    await root.acquire()
    task = await _queued(child)
    root.release()
    assert await task == 2
    assert (root.in_use, child.in_use) == (1, 1)


async def test_freed_parent_unit_goes_to_the_longest_waiting_sibling() -> None:
    root = CapacitySource(1)
    a, b = CapacitySource(5, root), CapacitySource(5, root)
    await root.acquire()
    later = await _queued(a)
    first = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    # b's waiter joined after a's: a's is older and gets the unit.
    root.release()
    await settle()
    assert later.done() and not first.done()
    a.release()
    assert await first == 4
    await later


async def test_set_limit_raising_serves_waiters_at_once() -> None:
    cap = CapacitySource(0)
    tasks = [asyncio.create_task(cap.acquire()) for _ in range(3)]
    await settle()
    cap.set_limit(2)
    await settle()
    assert [t.done() for t in tasks] == [True, True, False]
    cap.set_limit(3)
    await asyncio.gather(*tasks)


async def test_lowering_the_limit_revokes_nothing() -> None:
    cap = CapacitySource(4)
    for _ in range(4):
        await cap.acquire()
    cap.set_limit(2)
    assert (cap.in_use, cap.available) == (4, 0)
    cap.release()
    cap.release()
    assert cap.available == 0  # still at the new limit
    cap.release()
    assert cap.available == 1


async def test_cancelled_waiter_leaves_the_queue_and_loses_no_unit() -> None:
    cap = CapacitySource(1)
    await cap.acquire()
    doomed = await _queued(cap)
    behind = await _queued(cap)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    assert cap.waiting == 1
    cap.release()
    assert await behind == 0
    assert cap.in_use == 1


async def test_waiter_cancelled_after_its_grant_gives_the_unit_back() -> None:
    root = CapacitySource(1)
    cap = CapacitySource(1, root)
    await cap.acquire()
    granted = await _queued(cap)
    cap.release()  # grants the unit to `granted` ...
    granted.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await granted
    assert (cap.in_use, root.in_use, cap.available) == (0, 0, 1)


async def test_grant_refunded_by_a_cancelled_waiter_goes_to_the_next() -> None:
    cap = CapacitySource(1)
    await cap.acquire()
    granted = await _queued(cap)
    behind = await _queued(cap)
    cap.release()
    granted.cancel()
    await asyncio.gather(granted, return_exceptions=True)
    assert await behind == 0
    assert cap.in_use == 1


async def test_acquire_timeout_raises_and_takes_nothing() -> None:
    cap = CapacitySource(1)
    await cap.acquire()
    with pytest.raises(AcquireTimeoutError) as info:
        await cap.acquire(timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert (cap.in_use, cap.waiting) == (1, 0)


async def test_release_without_acquire_raises_and_changes_nothing() -> None:
    cap = CapacitySource(2)
    with pytest.raises(OverReleaseError, match="only 0 in use"):
        cap.release()
    assert isinstance(OverReleaseError("x"), ValueError)
    assert cap.available == 2


async def test_over_release_at_an_ancestor_changes_no_level() -> None:
    root = CapacitySource(2)
    child = CapacitySource(2, root)
    await child.acquire()
    root.release()  # gives back the unit the child holds at the root
    with pytest.raises(OverReleaseError, match="ancestor"):
        child.release()
    assert (child.in_use, root.in_use) == (1, 0)


async def test_async_with_acquires_and_releases() -> None:
    root = CapacitySource(1)
    cap = CapacitySource(1, root)
    async with cap as held:
        assert held is cap
        assert (cap.in_use, root.in_use) == (1, 1)
    assert (cap.in_use, root.in_use) == (0, 0)


async def test_statistics_and_repr_show_live_numbers() -> None:
    clock = ManualClock(100.0)
    cap = CapacitySource(1, clock=clock)
    await cap.acquire()
    task = await _queued(cap)
    clock.advance(2.5)
    stats = cap.statistics()
    assert (stats.limit, stats.available, stats.in_use, stats.waiting) == (1, 0, 1, 1)
    assert stats.oldest_wait == 2.5
    assert repr(cap) == "<CapacitySource limit=1 available=0 in_use=1 waiting=1>"
    cap.release()
    await task


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((-1,), ValueError, "limit must be >= 0"),
        ((1.5,), TypeError, "limit must be an int"),
        ((1, "root"), TypeError, "parent must be a CapacitySource"),
    ],
)
def test_bad_arguments_name_what_was_wrong(
    args: tuple[object, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CapacitySource(*args)  # type: ignore[arg-type]


async def test_bad_timeout_and_limit_are_rejected() -> None:
    cap = CapacitySource(0)
    with pytest.raises(ValueError, match="timeout"):
        await cap.acquire(timeout=-1)
    with pytest.raises(ValueError, match="limit"):
        cap.set_limit(-2)
