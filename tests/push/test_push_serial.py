"""PushSerialObj and the turn every stateful push stage takes (decision C2)."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    PushMapObj,
    PushPostCallbacksObj,
    PushReduceObj,
    PushSerialObj,
    PushWindowObj,
    SinkCollectObj,
)
from pullpush._sync import ParkingLot
from pullpush.testing import RecordingSink
from pullpush.testing import run as run_on_loop


async def test_no_priming_first_value_is_delivered() -> None:
    sink = RecordingSink()
    serial = PushSerialObj(sink)
    assert await serial.asend("first") is True
    assert sink.items == ["first"]


async def test_concurrent_sends_arrive_one_at_a_time_in_arrival_order() -> None:
    sink = RecordingSink(yield_to_loop=True)
    serial = PushSerialObj(sink)
    await asyncio.gather(*(serial.asend(i) for i in range(20)))
    assert sink.items == list(range(20))
    assert sink.max_in_flight == 1


async def test_reference_example_three_concurrent_pushes_all_arrive() -> None:
    sink = RecordingSink(delay=0.001)
    serial = PushSerialObj(sink)
    await asyncio.gather(serial.asend("a"), serial.asend("b"), serial.asend("c"))
    await serial.aclose()
    assert sink.items == ["a", "b", "c"] and sink.closed


async def test_each_asend_returns_after_its_value_was_delivered() -> None:
    sink = RecordingSink(yield_to_loop=True)
    serial = PushSerialObj(sink)
    tasks = [asyncio.ensure_future(serial.asend(i)) for i in range(3)]
    await tasks[1]
    assert sink.items[:2] == [0, 1]
    await asyncio.gather(*tasks)


async def test_close_during_sends_is_deferred_until_queued_values_are_delivered() -> None:
    sink = RecordingSink(yield_to_loop=True)
    serial = PushSerialObj(sink)
    sends = [asyncio.ensure_future(serial.asend(i)) for i in range(5)]
    await asyncio.sleep(0)  # the first send holds the turn, the others queue
    await serial.aclose()  # returns at once: the close is pending
    assert serial.done and not sink.closed
    assert await serial.asend(99) is False  # refused: sent after the close
    await asyncio.gather(*sends)
    assert sink.items == [0, 1, 2, 3, 4] and sink.closed


async def test_throw_during_sends_is_deferred_too() -> None:
    sink = RecordingSink(yield_to_loop=True)
    serial = PushSerialObj(sink)
    sends = [asyncio.ensure_future(serial.asend(i)) for i in range(3)]
    await asyncio.sleep(0)
    error = RuntimeError("stop")
    await serial.athrow(error)
    await asyncio.gather(*sends)
    assert sink.items == [0, 1, 2] and sink.error_received is error


async def test_close_from_inside_the_stage_downstream_does_not_deadlock() -> None:
    sink = RecordingSink()
    holder: list[Any] = []

    async def close_at_three(total: int) -> None:
        if total == 3:
            await holder[0].aclose()  # re-entrant: the reduce is mid-send

    window = PushWindowObj(sink, 2)
    reduce = PushReduceObj(PushPostCallbacksObj(window, close_at_three), operator.add, 0)
    holder.append(reduce)
    assert await reduce.asend(1) is True
    assert await reduce.asend(2) is False  # closed by its own downstream
    assert sink.items == [[1, 3]] and sink.closed  # the close ran after the send
    assert await reduce.asend(3) is False


class GateSink(RecordingSink):
    """Holds each value until ``gate`` is set (so its sender keeps the turn)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def next_impl(self, value: Any) -> None:
        self.started.set()
        await self.gate.wait()
        await super().next_impl(value)


class CancelOnWake(ParkingLot):
    """A parking lot that cancels ``victim`` right after waking it, before it runs."""

    victim: asyncio.Task[Any] | None = None

    def unpark(self, count: int = 1, value: Any = None) -> int:
        woken = super().unpark(count, value)
        if self.victim is not None:
            self.victim.cancel()
            self.victim = None
        return woken


async def hold_turn(serial: PushSerialObj[Any], sink: GateSink) -> asyncio.Task[bool]:
    first = asyncio.ensure_future(serial.asend("held"))
    await sink.started.wait()
    return first


async def queue_sends(serial: PushSerialObj[Any], *values: Any) -> list[asyncio.Task[bool]]:
    tasks = [asyncio.ensure_future(serial.asend(v)) for v in values]
    while serial._turn.queued < len(values):
        await asyncio.sleep(0)
    return tasks


async def test_cancelling_a_waiting_sender_withdraws_only_its_value() -> None:
    sink = GateSink()
    serial = PushSerialObj(sink)
    first = await hold_turn(serial, sink)
    second, third = await queue_sends(serial, 1, 2)
    second.cancel()
    sink.gate.set()
    await asyncio.gather(first, third, second, return_exceptions=True)
    assert second.cancelled() and sink.items == ["held", 2]
    assert serial._turn.idle
    assert await serial.asend(3) is True and sink.items == ["held", 2, 3]


async def test_cancelling_a_woken_sender_passes_the_turn_on() -> None:
    sink = GateSink()
    serial = PushSerialObj(sink)
    lot = serial._turn._lot = CancelOnWake()
    first = await hold_turn(serial, sink)
    second, third = await queue_sends(serial, 1, 2)
    lot.victim = second  # cancelled right after the release wakes it
    sink.gate.set()
    await asyncio.gather(first, second, third, return_exceptions=True)
    assert second.cancelled() and sink.items == ["held", 2]
    assert serial._turn.idle


async def test_cancelled_last_waiter_runs_the_pending_close() -> None:
    sink = GateSink()
    serial = PushSerialObj(sink)
    lot = serial._turn._lot = CancelOnWake()
    first = await hold_turn(serial, sink)
    (second,) = await queue_sends(serial, 1)
    await serial.aclose()  # deferred: a send holds the turn, another waits
    assert not sink.closed
    lot.victim = second  # woken to go before the close, then cancelled
    sink.gate.set()
    await asyncio.gather(first, second, return_exceptions=True)
    assert second.cancelled() and sink.items == ["held"]
    assert sink.closed and serial._turn.idle


async def test_cancelling_the_holder_releases_the_turn() -> None:
    sink = GateSink()
    serial = PushSerialObj(sink)
    first = await hold_turn(serial, sink)
    (second,) = await queue_sends(serial, 1)
    first.cancel()
    sink.gate.set()
    assert await second is True
    assert sink.items == [1] and first.cancelled()


async def test_sink_done_while_senders_wait_drops_their_values() -> None:
    sink = RecordingSink(yield_to_loop=True, done_after=1)
    serial = PushSerialObj(sink)
    results = await asyncio.gather(*(serial.asend(i) for i in range(3)))
    assert results == [False, False, False] and sink.items == [0]


async def test_stage_error_propagates_to_its_sender_and_the_stage_goes_on() -> None:
    sink = RecordingSink(fail_at=1)
    serial = PushSerialObj(sink)
    results = await asyncio.gather(*(serial.asend(i) for i in range(3)), return_exceptions=True)
    assert results[0] is True and isinstance(results[1], RuntimeError) and results[2] is True
    assert sink.items == [0, 2]


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(), max_size=8), min_size=1, max_size=6),
    yield_points=st.lists(st.booleans(), min_size=1, max_size=10),
)
def test_serial_under_concurrent_senders_loses_and_duplicates_nothing(
    loop_kind: str, batches: list[list[int]], yield_points: list[bool]
) -> None:
    async def scenario() -> None:
        sink = SinkCollectObj()
        step = iter(yield_points * 100)

        async def maybe_yield(v: Any) -> Any:
            if next(step):
                await asyncio.sleep(0)
            return v

        serial = PushSerialObj(PushMapObj(sink, maybe_yield))
        arrival: list[int] = []

        async def producer(values: list[int]) -> None:
            for v in values:
                arrival.append(v)
                await serial.asend(v)
                await maybe_yield(None)

        await asyncio.gather(*(producer(b) for b in batches))
        await serial.aclose()
        assert list(sink.buffer) == arrival  # nothing lost or duplicated, arrival order

    run_on_loop(scenario(), loop=loop_kind)
