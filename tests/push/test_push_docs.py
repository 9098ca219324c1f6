"""The documented push and bidirectional examples (SPEC 2, FEATURES 2.5-2.8), with the
section 5 decisions applied. Each test names the example it reproduces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from pullpush import (
    BidirectionalChain,
    PushBufferObj,
    PushChainBuilder,
    PushDistributeObj,
    PushForkObj,
    PushMapObj,
    PushObj1To1,
    PushReduceObj,
    PushSerialObj,
    PushWindowTimeoutObj,
    SinkCallbacksObj,
    SinkCollectObj,
)


async def test_spec_seed_distribute_example() -> None:
    high, low = SinkCollectObj(), SinkCollectObj()
    d = PushDistributeObj([high, low], lambda s: 0 if "URGENT" in s else 1)
    await d.asend("INFO: System normal.")
    await d.asend("ALERT: URGENT CPU at 99%.")
    await d.aclose()
    assert high.buffer == ["ALERT: URGENT CPU at 99%."] and low.buffer == ["INFO: System normal."]


async def test_c2_serial_reference_example_all_three_concurrent_values_arrive() -> None:
    sink = SinkCollectObj()

    async def slow(v: str) -> str:
        await asyncio.sleep(0.001)
        return v

    serial = PushSerialObj(PushMapObj(sink, slow))
    await asyncio.gather(serial.asend("a"), serial.asend("b"), serial.asend("c"))
    assert sink.buffer == ["a", "b", "c"]


async def test_c3_buffer_example_remainder_is_flushed_by_default() -> None:
    flushed, dropped = SinkCollectObj(), SinkCollectObj()
    for sink, flush in ((flushed, True), (dropped, False)):
        buffer = PushBufferObj(sink, lambda buf: len(buf) >= 3, flush_on_close=flush)
        for v in [1, 2, 3, 4]:
            await buffer.asend(v)
        await buffer.aclose()
    assert flushed.buffer == [[1, 2, 3], [4]]
    assert dropped.buffer == [[1, 2, 3]]  # the original example's output


async def test_c16_push_reducer_takes_accumulator_then_value() -> None:
    sink = SinkCollectObj()
    reduce = PushReduceObj(sink, lambda acc, v: f"{acc}{v}", ">")
    for v in "abc":
        await reduce.asend(v)
    assert sink.buffer == [">a", ">ab", ">abc"]


async def test_c22_async_map_in_a_push_chain_is_awaited() -> None:
    async def fetch(n: int) -> str:
        await asyncio.sleep(0)
        return f"item-{n}"

    chain, out = PushChainBuilder.start().map(fetch).to_array()
    await chain.asend(1)
    assert out == ["item-1"]


async def test_chain_window_partial_window_flushed_on_return() -> None:
    chain, out = PushChainBuilder.start().window(3).to_array()
    for v in range(1, 6):
        await chain.asend(v)
    await chain.aclose()
    assert out == [[1, 2, 3], [4, 5]]


async def test_window_timeout_return_clears_timer_flushes_then_closes_sink() -> None:
    sink = SinkCollectObj()
    window = PushWindowTimeoutObj(sink, 5, 60)
    await window.asend("x")
    await window.aclose()
    assert sink.buffer == [["x"]] and sink.done and window._timer is None


async def test_push_obj_1_to_1_used_directly_passes_through() -> None:
    sink = SinkCollectObj()
    link: PushObj1To1[int, int] = PushObj1To1(sink)
    await link.asend(1)
    await link.aclose()
    assert sink.buffer == [1] and sink.done


async def test_fork_same_reference_to_every_branch() -> None:
    a, b = SinkCollectObj(), SinkCollectObj()
    event = {"id": 1}
    await PushForkObj([a, b]).asend(event)
    assert a.buffer[0] is b.buffer[0] is event


async def test_sink_callbacks_ignore_results() -> None:
    seen: list[int] = []
    chain = (
        PushChainBuilder.start()
        .filter(lambda n: n > 0)
        .into(SinkCallbacksObj(seen.append, lambda n: "ignored"))
    )
    await chain.asend(-1)
    await chain.asend(2)
    assert seen == [2]


async def test_bidi_protocol_example() -> None:
    async def echo_upper() -> AsyncGenerator[str, str]:
        text = yield ""
        while True:
            text = yield text.upper()

    chain = (
        BidirectionalChain.identity()
        .map(str.strip)
        .then(BidirectionalChain.from_generator(echo_upper))
    )
    assert chain.length == 3
    assert await chain.asend(" hi ") == "HI"
    await chain.aclose()
    assert chain.closed
