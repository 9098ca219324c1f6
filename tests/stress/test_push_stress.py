"""Push stress: many concurrent senders, and cancellation storms, through serialised
stages and chains. Run with ``./scripts/test`` (the ``stress`` marker)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from pullpush import PushChainBuilder, PushSerialObj
from pullpush.testing import RecordingSink

pytestmark = pytest.mark.stress


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compiled", [False, True])
async def test_many_producers_through_a_stateful_chain(compiled: bool) -> None:
    producers, per_producer = 40, 500
    totals: list[int] = []
    builder = (
        PushChainBuilder.start()
        .map(lambda n: n * 2)
        .window(7)
        .map(sum)
        .reduce(lambda acc, s: acc + s, 0)
        .post_callback(totals.append)
    )
    sink = RecordingSink(yield_to_loop=True)
    chain = (builder.compile() if compiled else builder).into(sink)

    async def producer(p: int) -> None:
        for i in range(per_producer):
            await chain.asend(p * per_producer + i)
            if i % 13 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(p) for p in range(producers)))
    await chain.aclose()
    n = producers * per_producer
    assert sink.items[-1] == 2 * n * (n - 1) // 2  # every value folded exactly once
    assert sink.items == sorted(sink.items) and sink.closed
    assert len(sink.items) == -(-n // 7)  # full windows plus the flushed remainder


@pytest.mark.timeout(60)
async def test_cancellation_storm_on_a_serial_stage() -> None:
    rng = random.Random(1234)
    sink = RecordingSink(yield_to_loop=True)
    serial = PushSerialObj(sink)
    sends = {v: asyncio.ensure_future(serial.asend(v)) for v in range(3000)}
    for _ in range(30):
        await asyncio.sleep(0)
        for v in rng.sample(sorted(sends), 40):
            sends[v].cancel()
    await asyncio.gather(*sends.values(), return_exceptions=True)
    delivered = Counter(sink.items)
    assert all(count == 1 for count in delivered.values())
    completed = [v for v, task in sends.items() if not task.cancelled()]
    assert set(completed) <= set(delivered)
    assert sink.items == sorted(sink.items)  # arrival order survives cancellations
    assert serial._turn.idle
    assert await serial.asend("after") is True and sink.items[-1] == "after"
