"""ParkingLot: FIFO wake-ups, timeouts, and the cancellation interleavings."""

from __future__ import annotations

import asyncio

from pullpush._sync import TIMED_OUT, ParkingLot


async def test_unpark_wakes_in_fifo_order() -> None:
    lot = ParkingLot()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await lot.park()
        order.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert lot.unpark(3) == 3
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_fix_unpark_skips_a_waiter_cancelled_before_it_resumed() -> None:
    # Fixes: unpark() raised InvalidStateError on the cancelled waiter's future.
    lot = ParkingLot()
    cancelled = asyncio.create_task(lot.park())
    live = asyncio.create_task(lot.park())
    await asyncio.sleep(0)
    cancelled.cancel()
    assert lot.unpark(1, "v") == 1
    assert await live == "v"
    await asyncio.gather(cancelled, return_exceptions=True)
    assert len(lot) == 0


async def test_fix_unpark_all_counts_only_live_waiters() -> None:
    lot = ParkingLot()
    cancelled = asyncio.create_task(lot.park())
    await asyncio.sleep(0)
    cancelled.cancel()
    assert lot.unpark_all() == 0
    await asyncio.gather(cancelled, return_exceptions=True)


async def test_fix_expired_waiter_leaves_the_lot_at_once() -> None:
    # Fixes: an unpark() between the timeout firing and the waiter resuming raised
    # InvalidStateError (the expired future was still in the lot).
    lot = ParkingLot()
    task = asyncio.create_task(lot.park(60))
    await asyncio.sleep(0)
    (fut,) = lot._waiters
    lot._expire(fut)  # what the timer does when it fires
    assert len(lot) == 0
    assert lot.unpark() == 0
    assert await task is TIMED_OUT


async def test_park_times_out() -> None:
    lot = ParkingLot()
    assert await lot.park(0) is TIMED_OUT
    assert len(lot) == 0


async def test_woken_then_cancelled_waiter_passes_the_wake_up_on() -> None:
    lot = ParkingLot()
    first = asyncio.create_task(lot.park())
    second = asyncio.create_task(lot.park())
    await asyncio.sleep(0)
    lot.unpark(1, "grant")
    first.cancel()
    assert await second == "grant"
    await asyncio.gather(first, return_exceptions=True)
