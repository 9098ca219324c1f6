"""PushChainBuilder (immutable recipes, terminals) and PushChain (in-place mutation)."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

import pytest

from pullpush import (
    PushChain,
    PushChainBuilder,
    PushFilterObj,
    PushMapObj,
    PushSerialObj,
    SinkCollectObj,
)
from pullpush.testing import RecordingSink


async def run(chain: Any, values: Any, close: bool = True) -> None:
    for v in values:
        await chain.asend(v)
    if close:
        await chain.aclose()


async def test_builder_is_immutable_and_reusable() -> None:
    base = PushChainBuilder.start().map(lambda n: n + 1)
    doubled = base.map(lambda n: n * 2)
    assert [op.kind for op in base.ops] == ["map"]
    assert [op.kind for op in doubled.ops] == ["map", "map"]
    chain1, out1 = doubled.to_array()
    chain2, out2 = doubled.to_array()
    await run(chain1, [1])
    await run(chain2, [2])
    assert out1 == [4] and out2 == [6]


async def test_every_fluent_operation() -> None:
    seen_pre: list[int] = []
    seen_post: list[int] = []

    async def is_odd(n: int) -> bool:
        return n % 2 == 1

    chain, out = (
        PushChainBuilder.start()
        .map(lambda n: n * 10)
        .pre_callback(seen_pre.append)
        .flat_map(lambda n: [n, n + 1])
        .filter(is_odd)
        .reduce(operator.add, 0)
        .post_callback(seen_post.append)
        .buffer_reduce(lambda n: [n] if n > 20 else [])
        .window(2)
        .flatten()
        .serial()
        .buffer(lambda buf: len(buf) == 3)
        .pipe(lambda sink: PushMapObj(sink, tuple))
        .to_array()
    )
    await run(chain, [1, 2, 3, 4])
    # 10,11,20,21,30,31,40,41 -> odd: 11,21,31,41 -> sums 11,32,63,104 -> >20: 32,63,104
    assert seen_pre == [10, 20, 30, 40]
    assert seen_post == [11, 32, 63, 104]
    assert out == [(32, 63, 104)]


async def test_window_flushes_the_partial_window_on_close_by_default() -> None:
    chain, out = PushChainBuilder.start().window(3).to_array()
    await run(chain, range(5))
    assert out == [[0, 1, 2], [3, 4]]
    chain, out = PushChainBuilder.start().window(3, flush_on_close=False).to_array()
    await run(chain, range(5))
    assert out == [[0, 1, 2]]


async def test_window_timeout_operation() -> None:
    chain, out = PushChainBuilder.start().window_timeout(2, 60).to_array()
    await run(chain, range(3))
    assert out == [[0, 1], [2]]


async def test_turnstile_reports_to_the_collector_and_swallows_its_errors() -> None:
    class Collector:
        def __init__(self) -> None:
            self.passes: list[tuple[str, Any]] = []

        def on_turnstile_pass(self, checkpoint: str, item_id: Any) -> None:
            self.passes.append((checkpoint, item_id))
            if item_id == 2:
                raise RuntimeError("metrics broke")

    collector = Collector()
    chain, out = (
        PushChainBuilder.start()
        .turnstile("in", collector, id=lambda v: v["id"])
        .map(lambda v: v["id"])
        .to_array()
    )
    await run(chain, [{"id": 1}, {"id": 2}])
    assert out == [1, 2] and collector.passes == [("in", 1), ("in", 2)]


async def test_turnstile_with_an_async_collector_swallows_its_errors_too() -> None:
    passes: list[Any] = []

    class AsyncCollector:
        async def on_turnstile_pass(self, checkpoint: str, item_id: Any) -> None:
            passes.append(checkpoint)
            raise RuntimeError("exporter down")

    for builder in (PushChainBuilder.start(), PushChainBuilder.start().compile()):
        chain, out = builder.turnstile("a", AsyncCollector()).to_array()
        await run(chain, [1])
        assert out == [1]
    assert passes == ["a", "a"]


async def test_to_callbacks_and_to_array_with_given_buffer() -> None:
    got: list[int] = []
    chain = PushChainBuilder.start().map(abs).to_callbacks(got.append)
    await run(chain, [-1, -2])
    assert got == [1, 2]
    mine: list[int] = [0]
    result = PushChainBuilder.start().to_array(mine)
    assert result.buffer is mine and isinstance(result.chain, PushChain)
    chain, _ = result
    await run(chain, [5])
    assert mine == [0, 5]


async def test_fork_terminal_builds_each_branch_from_a_fresh_builder() -> None:
    evens: list[int] = []
    odds: list[int] = []
    chain = (
        PushChainBuilder.start()
        .map(lambda n: n + 1)
        .fork(
            lambda b: b.filter(lambda n: n % 2 == 0).to_callbacks(evens.append),
            lambda b: b.filter(lambda n: n % 2 == 1).to_callbacks(odds.append),
        )
    )
    await run(chain, range(5))
    assert evens == [2, 4] and odds == [1, 3, 5]


async def test_fork_terminal_forwards_close_to_the_branches() -> None:
    a, b = RecordingSink(), RecordingSink()
    chain = PushChainBuilder.start().window(2).fork(lambda x: x.into(a), lambda x: x.into(b))
    await run(chain, [1, 2, 3])
    assert a.items == b.items == [[1, 2], [3]] and a.closed and b.closed


async def test_concurrent_fork_terminal() -> None:
    a, b = RecordingSink(yield_to_loop=True), RecordingSink(yield_to_loop=True)
    chain = PushChainBuilder.start().fork(lambda x: x.into(a), lambda x: x.into(b), concurrent=True)
    await run(chain, [1, 2])
    assert a.items == b.items == [1, 2]


async def test_distribute_and_round_robin_terminals() -> None:
    high, low = RecordingSink(), RecordingSink()
    chain = PushChainBuilder.start().distribute(
        lambda s: 0 if "URGENT" in s else 1, lambda b: b.into(high), lambda b: b.into(low)
    )
    await run(chain, ["INFO: System normal.", "ALERT: URGENT CPU at 99%."])
    assert high.items == ["ALERT: URGENT CPU at 99%."] and low.items == ["INFO: System normal."]
    assert high.closed and low.closed

    sinks = [RecordingSink(), RecordingSink()]
    chain = PushChainBuilder.start().round_robin_to(*(lambda b, s=s: b.into(s) for s in sinks))
    await run(chain, range(5))
    assert [s.items for s in sinks] == [[0, 2, 4], [1, 3]]


async def test_chain_properties_and_done() -> None:
    sink = RecordingSink(done_after=2)
    chain = PushChainBuilder.start().map(str).filter(bool).into(sink)
    assert chain.length == len(chain) == 3
    assert chain.tail is sink and isinstance(chain.head, PushMapObj)
    assert [type(link).__name__ for link in chain.links] == [
        "PushMapObj",
        "PushFilterObj",
        "RecordingSink",
    ]
    assert chain.link_at(-1) is sink
    assert await chain.asend(1) is True
    assert await chain.asend(2) is False
    assert chain.done and await chain.asend(3) is False
    assert sink.items == ["1", "2"]


async def test_close_and_throw_travel_through_every_link() -> None:
    sink = RecordingSink()
    chain = PushChainBuilder.start().map(str).window(5).into(sink)
    await chain.asend(1)
    await chain.aclose()
    assert sink.items == [["1"]] and sink.closed and chain.done
    sink2 = RecordingSink()
    chain2 = PushChainBuilder.start().map(str).serial().into(sink2)
    error = ValueError("x")
    await chain2.athrow(error)
    assert sink2.error_received is error and chain2.done


async def test_in_place_mutation_rewires_sinks() -> None:
    sink = SinkCollectObj()
    chain = PushChainBuilder.start().map(lambda n: n + 1).into(sink)
    await chain.asend(1)  # 2
    doubler = chain.insert_after(0, lambda s: PushMapObj(s, lambda n: n * 2))
    assert chain.links[1] is doubler and chain.links[0].sink is doubler  # type: ignore[attr-defined]
    await chain.asend(1)  # 4
    chain.insert_before(0, PushFilterObj(SinkCollectObj(), lambda n: n > 0))  # new head
    await chain.asend(-5)  # dropped
    await chain.asend(2)  # 6
    chain.replace(2, lambda s: PushMapObj(s, lambda n: n * 10))
    await chain.asend(2)  # 30
    removed = chain.remove(1)
    assert isinstance(removed, PushMapObj)
    await chain.asend(2)  # 20
    new_sink = SinkCollectObj()
    chain.replace(-1, new_sink)
    await chain.asend(7)
    assert sink.buffer == [2, 4, 6, 30, 20] and new_sink.buffer == [70]
    assert chain.length == 3


async def test_mutation_arguments_are_checked() -> None:
    chain = PushChainBuilder.start().map(str).into(SinkCollectObj())
    with pytest.raises(IndexError, match="tail"):
        chain.insert_after(1, lambda s: PushMapObj(s, str))
    with pytest.raises(IndexError, match="tail"):
        chain.remove(-1)
    with pytest.raises(IndexError, match="index 5"):
        chain.remove(5)
    with pytest.raises(TypeError, match="link"):
        chain.insert_before(0, 42)
    with pytest.raises(TypeError, match="one-to-one"):
        chain.insert_before(0, SinkCollectObj())
    with pytest.raises(TypeError, match="index"):
        chain.remove("0")  # type: ignore[arg-type]


def test_builder_validates_arguments_when_recorded() -> None:
    b = PushChainBuilder.start()
    with pytest.raises(ValueError, match="size"):
        b.window(0)
    with pytest.raises(ValueError, match="size"):
        b.window_timeout(-1, 1)
    with pytest.raises(ValueError, match="timeout"):
        b.window_timeout(2, 0)
    with pytest.raises(ValueError, match="timeout_from"):
        b.window_timeout(2, 1, timeout_from="never")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transform"):
        b.map(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="predicate"):
        b.filter(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reducer"):
        b.reduce("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        b.post_callback(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_turnstile_pass"):
        b.turnstile("x", object())
    with pytest.raises(TypeError, match="sink"):
        b.into(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="branch"):
        b.fork()
    with pytest.raises(TypeError, match=r"branches\[0\] result"):
        b.fork(lambda x: 1)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="factory result"):
        b.pipe(lambda sink: 3).into(SinkCollectObj())  # type: ignore[arg-type, return-value]


def test_push_chain_constructor_checks_the_wiring() -> None:
    sink = SinkCollectObj()
    with pytest.raises(ValueError, match="links"):
        PushChain([])
    with pytest.raises(ValueError, match=r"links\[0\]\.sink"):
        PushChain([PushMapObj(SinkCollectObj(), str), sink])
    assert PushChain([sink]).head is sink


async def test_serial_stage_in_a_chain_orders_concurrent_sends() -> None:
    sink = RecordingSink(yield_to_loop=True)
    chain = PushChainBuilder.start().serial().map(str).into(sink)
    await asyncio.gather(*(chain.asend(i) for i in range(10)))
    assert sink.items == [str(i) for i in range(10)] and sink.max_in_flight == 1
    assert isinstance(chain.head, PushSerialObj)
