"""ParkingLot and WaitObject."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import SignalStoppedError, WaitObject
from pullpush._sync import TIMED_OUT, ParkingLot
from pullpush.testing import settle


async def test_parking_lot_wakes_in_fifo_order() -> None:
    lot = ParkingLot()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await lot.park()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await settle()
    assert len(lot) == 4
    assert lot.unpark(2) == 2
    await settle()
    assert order == [0, 1]
    assert lot.unpark_all() == 2
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def test_a_woken_then_cancelled_waiter_passes_its_wake_on() -> None:
    lot = ParkingLot()
    first = asyncio.create_task(lot.park())
    second = asyncio.create_task(lot.park())
    await settle()
    lot.unpark(1, "grant")
    first.cancel()  # cancelled after the wake-up, before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == "grant"


async def test_park_times_out() -> None:
    lot = ParkingLot()
    assert await lot.park(timeout=0.001) is TIMED_OUT
    assert len(lot) == 0


async def test_wait_object_last_value_wins_when_nobody_waits() -> None:
    signal: WaitObject[int] = WaitObject("test")
    signal.resolve(1)
    signal.resolve(2)
    assert signal.has_pending
    assert await signal.wait() == 2
    assert not signal.has_pending


async def test_wait_object_wakes_every_waiter() -> None:
    signal: WaitObject[str] = WaitObject("test")
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    await settle()
    assert signal.waiters == 3
    signal.resolve("go")
    assert await asyncio.gather(*waiters) == ["go", "go", "go"]
    assert not signal.has_pending


async def test_wait_object_init_value_is_delivered_first() -> None:
    signal = WaitObject("test", init_value=True)
    assert await signal.wait() is True


async def test_wait_object_reject_is_sticky() -> None:
    signal: WaitObject[int] = WaitObject("test")
    waiter = asyncio.create_task(signal.wait())
    await settle()
    signal.reject(ValueError("no"))
    signal.resolve(5)
    with pytest.raises(ValueError, match="no"):
        await waiter
    with pytest.raises(ValueError, match="no"):
        await signal.wait()


async def test_wait_object_stop_ends_iteration() -> None:
    signal: WaitObject[int] = WaitObject("test")
    received: list[int] = []

    async def listen() -> None:
        async for value in signal:
            received.append(value)

    task = asyncio.create_task(listen())
    await settle()
    signal.resolve(1)
    await settle()
    signal.resolve(2)
    await settle()
    signal.stop()
    await asyncio.wait_for(task, 1)
    assert received == [1, 2]
    with pytest.raises(SignalStoppedError):
        await signal.wait()
    assert "stopped" in repr(signal)
