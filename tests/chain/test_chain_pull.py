"""PullChain: factories, every fluent method, terminals, safety, mutation, closing.

Tests marked ``both`` run on the chain and on its compiled twin (``.compile()``):
the two must behave alike."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import traceback
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pullpush import (
    AttributedResult,
    ChainConsumedError,
    DefaultChainMetricsCollector,
    PullCallbackObj,
    PullChain,
    PullConcatObj,
    PullDedupeObj,
    PullEagerObj,
    PullFilterObj,
    PullMapObj,
    PullObj1To1Link,
    PullRaceObj,
    PullRaceRobinObj,
    PullRaceValuesObj,
    PullRoundRobinObj,
    PullTimeoutError,
    PullTimeoutObj,
    PullWindowObj,
    PullZipObj,
    SourceBufferObj,
    SourceFromIterable,
)
from pullpush.testing import TrackedSource, assert_items, assert_raises, settle


def numbers(*items: Any) -> SourceBufferObj[Any]:
    return SourceBufferObj(items, one_shot=True)


def chain_of(*items: Any) -> PullChain[Any]:
    return PullChain.from_source(numbers(*items))


both = pytest.mark.parametrize("compiled", [False, True], ids=["chain", "compiled"])


def ready(chain: PullChain[Any], compiled: bool) -> Any:
    """The chain, or its compiled twin."""
    return chain.compile() if compiled else chain


# -- FEATURES 2.8.1 examples ---------------------------------------------------------------


async def test_quick_example() -> None:
    chain = chain_of(1, 2, 3, 4, 5).filter(lambda x: x % 2 == 0).map(lambda x: x * 10)
    assert await chain.collect() == [20, 40]


async def test_from_source_and_first() -> None:
    assert await PullChain.from_source(SourceBufferObj(["a", "b", "c"])).first() == "a"


async def test_concat_exhausts_each_source_in_order() -> None:
    chain = PullChain.concat(numbers(1, 2), numbers(3, 4))
    assert isinstance(chain.link_at(0), PullConcatObj)
    await assert_items(chain, [1, 2, 3, 4])


async def test_race_attributed_yields_attributed_results() -> None:
    fast, slow = numbers(1, 2, 3), numbers(10, 20, 30)
    chain = PullChain.race_attributed(fast, slow)
    assert isinstance(chain.link_at(0), PullRaceObj)
    results = await chain.collect()
    assert all(isinstance(r, AttributedResult) for r in results)
    assert sorted(r.value for r in results if r.source is fast) == [1, 2, 3]
    assert sorted(r.value for r in results if r.source is slow) == [10, 20, 30]


async def test_race_yields_unwrapped_values_decision_c15() -> None:
    chain = PullChain.race(numbers(1, 2, 3), numbers(10, 20, 30)).map(lambda v: v + 1)
    assert isinstance(chain.link_at(0), PullRaceValuesObj)
    await assert_items(chain, [2, 3, 4, 11, 21, 31], ordered=False)


async def test_round_robin_skips_exhausted_sources() -> None:
    chain = PullChain.round_robin(numbers(1, 2, 3), numbers(10, 20))
    assert isinstance(chain.link_at(0), PullRoundRobinObj)
    await assert_items(chain, [1, 10, 2, 20, 3])


async def test_zip_continues_while_any_source_is_alive() -> None:
    names, scores = numbers("Alice", "Bob"), numbers(95, 87)
    assert await PullChain.zip(names, scores).collect() == [("Alice", 95), ("Bob", 87)]
    chain = PullChain.zip(numbers(1, 2), numbers("a"))
    assert isinstance(chain.link_at(0), PullZipObj)
    assert await chain.collect() == [(1, "a"), (2,)]


@both
async def test_map_flat_map_filter(compiled: bool) -> None:
    assert await ready(chain_of(1, 2, 3).map(str), compiled).collect() == ["1", "2", "3"]

    async def repeat(n: int) -> AsyncGenerator[int, None]:
        for _ in range(n):
            yield n

    assert await ready(chain_of(1, 2, 3).flat_map(repeat), compiled).collect() == [1, 2, 2, 3, 3, 3]
    assert await ready(chain_of(1, 2, 3, 4, 5).filter(lambda x: x > 3), compiled).collect() == [
        4,
        5,
    ]


@both
async def test_async_callables_are_awaited(compiled: bool) -> None:
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    async def odd(n: int) -> bool:
        return n % 2 == 1

    async def add(acc: int, n: int) -> int:
        return acc + n

    chain = chain_of(1, 2, 3, 4).filter(odd).map(double).reduce(add, 0)
    assert await ready(chain, compiled).collect() == [2, 8]


@both
async def test_dedupe_is_global_keyed_or_consecutive_decision_c12(compiled: bool) -> None:
    assert await ready(chain_of(1, 1, 2, 2, 3, 1).dedupe(), compiled).collect() == [1, 2, 3]
    users = [
        {"id": 1, "name": "Alice"},
        {"id": 1, "name": "Alice (dup)"},
        {"id": 2, "name": "Bob"},
    ]
    unique = await ready(chain_of(*users).dedupe("id"), compiled).collect()
    assert unique == [users[0], users[2]]
    assert await ready(chain_of(1, 1, 2, 1).dedupe(consecutive=True), compiled).collect() == [
        1,
        2,
        1,
    ]
    assert await ready(chain_of(1, 11, 2, 21).dedupe(lambda n: n % 10), compiled).collect() == [
        1,
        2,
    ]


@both
async def test_reduce_takes_accumulator_then_value_decision_c16(compiled: bool) -> None:
    sums = await ready(chain_of(1, 2, 3, 4).reduce(lambda acc, n: acc + n, 0), compiled).collect()
    assert sums == [1, 3, 6, 10]
    pairs = await ready(chain_of("a", "b").reduce(lambda acc, v: [*acc, v], []), compiled).collect()
    assert pairs == [["a"], ["a", "b"]]
    assert await ready(chain_of(5, 1, 2).reduce(lambda acc, n: acc - n), compiled).collect() == [
        5,
        4,
        2,
    ]


@both
async def test_window_yields_the_partial_window(compiled: bool) -> None:
    assert await ready(chain_of(1, 2, 3, 4, 5).window(2), compiled).collect() == [
        [1, 2],
        [3, 4],
        [5],
    ]
    chain = chain_of(1, 2, 3, 4, 5).window(2, yield_remainder=False)
    assert await ready(chain, compiled).collect() == [[1, 2], [3, 4]]


async def test_window_timeout_batches_by_count_and_yields_the_partial_batch() -> None:
    chain = chain_of(*range(5)).window_timeout(2, 60)
    assert await chain.collect() == [[0, 1], [2, 3], [4]]
    chain = chain_of(*range(3)).window_timeout(2, 60, timeout_from="last_item")
    assert await chain.collect() == [[0, 1], [2]]


async def test_window_timeout_flushes_on_timeout() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncGenerator[int, None]:
        yield 1
        await gate.wait()
        yield 2

    chain = PullChain.from_source(slow()).window_timeout(10, 0.01)
    assert await chain.first() == [1]
    gate.set()
    assert await chain.collect() == [[2]]


@both
async def test_buffer_yields_the_remainder_decision_c13(compiled: bool) -> None:
    chain = chain_of(1, 2, 3, 4, 5).buffer(lambda buf: len(buf) >= 3)
    assert await ready(chain, compiled).collect() == [[1, 2, 3], [4, 5]]
    chain = chain_of(1, 2, 3, 4, 5).buffer(lambda buf: len(buf) >= 3, yield_remainder=False)
    assert await ready(chain, compiled).collect() == [[1, 2, 3]]


@both
async def test_buffer_reduce_assembles_pairs(compiled: bool) -> None:
    def pairs() -> Any:
        held: list[int] = []

        def reducer(value: int) -> Iterator[tuple[int, int]]:
            held.append(value)
            if len(held) == 2:
                yield (held[0], held[1])
                held.clear()

        return reducer

    assert await ready(chain_of(1, 2, 3, 4, 5).buffer_reduce(pairs()), compiled).collect() == [
        (1, 2),
        (3, 4),
    ]


@both
async def test_flatten_one_level_but_not_strings_decision_c11(compiled: bool) -> None:
    chain = chain_of([1, 2], [3, 4], [5])
    assert await ready(chain.flatten(), compiled).collect() == [1, 2, 3, 4, 5]

    async def letters() -> AsyncGenerator[str, None]:
        yield "x"
        yield "y"

    chain = chain_of("ab", [[1]], letters(), 7, (8, 9))
    assert await ready(chain.flatten(), compiled).collect() == ["ab", [1], "x", "y", 7, 8, 9]


async def test_eager_reads_ahead_with_a_default_buffer() -> None:
    chain = chain_of(*range(20)).eager()
    link = chain.link_at(-1)
    assert isinstance(link, PullEagerObj) and link.buffer_size == 8
    assert await chain.map(lambda n: n * 2).collect() == [n * 2 for n in range(20)]
    chain = chain_of(1, 2, 3).eager(10).map(str).filter(lambda s: s != "2")
    await assert_items(chain, ["1", "3"])


@both
async def test_callback_sees_every_item_and_passes_it_on(compiled: bool) -> None:
    seen: list[Any] = []

    async def record(x: int) -> None:
        seen.append(("async", x))

    chain = chain_of(1, 2, 3).callback(lambda x: seen.append(x), record).map(lambda x: x * 2)
    assert await ready(chain, compiled).collect() == [2, 4, 6]
    assert seen == [1, ("async", 1), 2, ("async", 2), 3, ("async", 3)]


async def test_timeout_throws_or_keeps_waiting() -> None:
    async def slow() -> AsyncGenerator[int, None]:
        yield 1
        await asyncio.sleep(0.05)
        yield 2

    chain = PullChain.from_source(slow()).timeout(0.005)
    assert isinstance(chain.link_at(-1), PullTimeoutObj)
    await assert_raises(chain, PullTimeoutError, items=[1])
    chain = PullChain.from_source(slow()).timeout(0.005, throw_on_timeout=False)
    assert await chain.collect() == [1, 2]
    assert chain.link_at(-1).timeouts >= 1


@both
async def test_in_order_resequences_by_index(compiled: bool) -> None:
    source = numbers({"seq": 2, "data": "c"}, {"seq": 0, "data": "a"}, {"seq": 1, "data": "b"})
    chain = PullChain.from_source(source).in_order("seq", 0).map(lambda item: item["data"])
    assert await ready(chain, compiled).collect() == ["a", "b", "c"]
    chain = chain_of(3, 1, 2).in_order(lambda n: n, 1)
    assert await ready(chain, compiled).collect() == [1, 2, 3]


@both
async def test_in_order_strict_raises_on_a_gap(compiled: bool) -> None:
    await assert_raises(
        ready(chain_of(0, 2).in_order(lambda n: n, strict=True), compiled),
        ValueError,
        items=[0],
        match="index 1 never arrived",
    )


async def test_pipe_integrates_a_custom_operator() -> None:
    class Doubled(PullObj1To1Link[str, int]):
        async def pull_impl(self) -> AsyncGenerator[int, Any]:
            async for value in self.source:
                yield len(value) * 2

    chain = chain_of("hi", "hello").pipe(Doubled)
    assert isinstance(chain.link_at(-1), Doubled)
    assert await chain.collect() == [4, 10]


async def test_mid_chain_merge_race() -> None:
    primary, secondary = numbers(1, 2, 3), numbers(10, 20, 30)
    chain = (
        PullChain.from_source(primary)
        .map(lambda x: x * 100)
        .merge_race(secondary)
        .map(lambda x: x + 1)
    )
    assert isinstance(chain.link_at(2), PullRaceValuesObj)
    await assert_items(chain, [101, 201, 301, 11, 21, 31], ordered=False)


async def test_merge_race_fair_is_race_robin_with_raw_values() -> None:
    chain = chain_of(1, 2, 3).merge_race_fair(numbers(10, 20, 30))
    assert isinstance(chain.link_at(-1), PullRaceRobinObj)
    items = await chain.collect()
    assert sorted(items) == [1, 2, 3, 10, 20, 30]
    for round_ in (items[0:2], items[2:4], items[4:6]):  # each round: one from each
        assert len({v >= 10 for v in round_}) == 2


async def test_merge_round_robin_and_concat() -> None:
    chain = chain_of(1, 2, 3).merge_round_robin(numbers(10, 20))
    assert await chain.collect() == [1, 10, 2, 20, 3]
    chain = chain_of(1, 2).map(lambda n: -n).merge_concat(numbers(3), numbers(4))
    assert await chain.collect() == [-1, -2, 3, 4]


async def test_turnstile_reports_passes_to_the_chain_collector() -> None:
    collector = DefaultChainMetricsCollector()
    chain = (
        chain_of(*range(6))
        .turnstile("in", collector)
        .filter(lambda n: n % 2 == 0)
        .turnstile("out", collector, id=lambda n: n)
    )
    assert await chain.collect() == [0, 2, 4]
    turnstiles = collector.snapshot().turnstiles
    assert turnstiles["in"].passed == 6 and turnstiles["out"].passed == 3


async def test_turnstile_swallows_collector_and_id_errors() -> None:
    class Broken:
        calls = 0

        def on_turnstile_pass(self, checkpoint: str, item_id: Any = None) -> None:
            self.calls += 1
            raise RuntimeError("metrics down")

    class AsyncBroken:
        async def on_turnstile_pass(self, checkpoint: str, item_id: Any = None) -> None:
            raise RuntimeError("metrics down")

    broken = Broken()
    chain = (
        chain_of(1, 2)
        .turnstile("a", broken)
        .turnstile("b", AsyncBroken())
        .turnstile("c", DefaultChainMetricsCollector(), id=lambda n: 1 / 0)
    )
    assert await chain.collect() == [1, 2]
    assert broken.calls == 2


# -- terminals -------------------------------------------------------------------------------


async def test_first_pulls_one_item_and_leaves_the_rest() -> None:
    source = TrackedSource([10, 20, 30])
    chain = PullChain.from_source(source).map(lambda n: n + 1)
    assert await chain.first() == 11
    assert source.pulls == 1 and not source.closed and not chain.done
    assert await chain.collect() == [21, 31]
    assert await chain_of().first() is None


async def test_for_each_sync_and_async() -> None:
    seen: list[int] = []

    async def record(n: int) -> None:
        await asyncio.sleep(0)
        seen.append(-n)

    await chain_of(1, 2).for_each(seen.append)
    await chain_of(3).for_each(record)
    assert seen == [1, 2, -3]


async def test_for_each_error_closes_the_chain() -> None:
    source = TrackedSource([1, 2, 3])
    chain = PullChain.from_source(source).map(lambda n: n)

    def fail(n: int) -> None:
        if n == 2:
            raise KeyError(n)

    with pytest.raises(KeyError):
        await chain.for_each(fail)
    assert source.closed and chain.done


async def test_async_for() -> None:
    seen = [item async for item in chain_of(1, 2, 3).map(lambda n: n * n)]
    assert seen == [1, 4, 9]


# -- introspection ---------------------------------------------------------------------------


async def test_links_length_and_link_at() -> None:
    source = numbers(1, 2, 3)
    chain = PullChain.from_source(source).map(lambda x: x * 2).filter(lambda x: x > 2)
    assert chain.length == 3 == len(chain)
    assert [type(link) for link in chain.links] == [SourceBufferObj, PullMapObj, PullFilterObj]
    assert chain.link_at(0) is source
    assert chain.link_at(-1) is chain.links[2]
    assert chain.link_at(2).source is chain.link_at(1)
    with pytest.raises(IndexError):
        chain.link_at(3)
    with pytest.raises(TypeError, match="index"):
        chain.link_at("0")  # type: ignore[arg-type]
    assert "PullChain SourceBufferObj -> PullMapObj -> PullFilterObj open" in repr(chain)


async def test_the_chain_pulls_straight_from_its_tail_cycle() -> None:
    # No generator layer of its own: as a source, or iterated, it costs its tail.
    chain = chain_of(1, 2).map(lambda n: n)
    tail = chain.link_at(-1)
    assert chain._cycle() is tail._cycle()
    await assert_items(PullMapObj(chain, lambda n: -n), [-1, -2])


async def test_done_follows_the_tail() -> None:
    chain = PullChain.from_source(SourceBufferObj([1], one_shot=True))
    assert not chain.done
    assert await chain.__anext__() == 1
    with pytest.raises(StopAsyncIteration):
        await chain.__anext__()
    assert chain.done
    other = chain_of(1, 2).map(str)
    await other.aclose()
    assert other.done and other.closed


@both
async def test_a_chain_is_a_source_for_another_chain(compiled: bool) -> None:
    inner = ready(chain_of(1, 2, 3).map(lambda n: n * 10), compiled)
    outer = PullChain.from_source(inner).filter(lambda n: n > 10)
    await assert_items(outer, [20, 30])
    assert inner.done


async def test_from_source_accepts_any_async_iterable() -> None:
    async def gen() -> AsyncGenerator[int, None]:
        yield 1
        yield 2

    assert await PullChain.from_source(gen()).collect() == [1, 2]
    raw = PullChain.from_source(gen())
    assert await raw.first() == 1 and await raw.first() == 2 and await raw.first() is None
    assert raw.done


# -- consumed-chain safety -------------------------------------------------------------------


async def test_an_extended_reference_is_consumed() -> None:
    chain1 = chain_of(1, 2, 3)
    chain2 = chain1.map(lambda x: x * 2)
    assert chain1.consumed and not chain2.consumed
    with pytest.raises(ChainConsumedError, match="consumed"):
        await chain1.__anext__()
    with pytest.raises(ChainConsumedError):
        await chain1.aclose()
    with pytest.raises(ChainConsumedError):
        await chain1.athrow(ValueError("x"))
    with pytest.raises(ChainConsumedError):
        chain1.close()
    with pytest.raises(ChainConsumedError):
        chain1.restart()
    with pytest.raises(ChainConsumedError):
        async for _ in chain1:
            pass
    with pytest.raises(ChainConsumedError):
        await chain1.collect()
    with pytest.raises(ChainConsumedError):
        chain1.map(str)
    with pytest.raises(ChainConsumedError):
        chain1.remove(0)
    assert chain1.link_at(0) is chain2.link_at(0) and chain1.length == 1  # introspection
    with pytest.raises(ChainConsumedError):
        await PullMapObj(chain1, str).__anext__()
    assert await chain2.__anext__() == 2
    assert await chain2.collect() == [4, 6]


async def test_mutation_merge_and_compile_consume_too() -> None:
    for make in (
        lambda c: c.insert_after(0, lambda src: PullMapObj(src, str)),
        lambda c: c.remove(1),
        lambda c: c.replace(1, lambda src: PullMapObj(src, str)),
        lambda c: c.merge_concat(numbers(9)),
        lambda c: c.compile(),
        lambda c: c.as_type(int),
    ):
        chain = chain_of(1).map(lambda n: n)
        make(chain)
        with pytest.raises(ChainConsumedError):
            await chain.first()


async def test_a_bad_argument_leaves_the_chain_usable() -> None:
    chain = chain_of(1, 2)
    with pytest.raises(TypeError):
        chain.map(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        chain.pipe(lambda src: 42)  # type: ignore[arg-type,return-value]
    assert not chain.consumed
    assert await chain.collect() == [1, 2]


# -- dynamic mutation -----------------------------------------------------------------------


async def test_insert_after_wires_the_new_link_in() -> None:
    seen: list[int] = []
    chain = chain_of(1, 2, 3).map(lambda x: x * 2).filter(lambda x: x > 2)
    modified = chain.insert_after(1, lambda source: PullCallbackObj(source, seen.append))
    assert [type(link) for link in modified.links] == [
        SourceBufferObj,
        PullMapObj,
        PullCallbackObj,
        PullFilterObj,
    ]
    assert modified.link_at(3).source is modified.link_at(2)
    assert await modified.collect() == [4, 6]
    assert seen == [2, 4, 6]


async def test_insert_after_the_tail_appends() -> None:
    chain = chain_of(1, 2).insert_after(0, lambda src: PullMapObj(src, str))
    assert await chain.collect() == ["1", "2"]


async def test_insert_before_gets_the_link_it_will_read() -> None:
    chain = chain_of(1, 2, 3).map(lambda x: x * 2)
    source = chain.link_at(0)
    received: list[Any] = []

    def factory(upstream: Any) -> PullFilterObj[int]:
        received.append(upstream)
        return PullFilterObj(upstream, lambda n: n != 2)

    modified = chain.insert_before(1, factory)
    assert received == [source]
    assert await modified.collect() == [2, 6]
    with pytest.raises(IndexError, match="source"):
        chain_of(1).insert_before(0, factory)


async def test_remove_rewires_and_refuses_the_source() -> None:
    chain = chain_of(1, 2, 3).map(lambda x: x * 2).filter(lambda x: x > 2)
    modified = chain.remove(2)
    assert modified.length == 2
    assert await modified.collect() == [2, 4, 6]
    middle = chain_of(1, 2, 3).map(lambda x: x * 2).filter(lambda x: x > 2).remove(1)
    assert await middle.collect() == [3]
    with pytest.raises(IndexError, match="source"):
        chain_of(1).map(str).remove(0)
    with pytest.raises(IndexError):
        chain_of(1).map(str).remove(5)


async def test_replace_builds_from_the_link_before() -> None:
    chain = chain_of(1, 2, 3).map(lambda x: x * 2).filter(lambda x: x > 2)
    modified = chain.replace(1, lambda src: PullMapObj(src, lambda x: x * 10))
    assert await modified.collect() == [10, 20, 30]
    with pytest.raises(IndexError, match="source"):
        chain_of(1).replace(0, lambda src: src)


async def test_mutation_rewires_a_merge_combiner() -> None:
    chain = chain_of(1, 2).map(lambda n: n * 10).merge_concat(numbers(3))
    modified = chain.remove(1)
    assert await modified.collect() == [1, 2, 3]


async def test_mutation_of_a_started_chain_applies_from_the_next_pull() -> None:
    source = TrackedSource([1, 2, 3, 4])
    chain = PullChain.from_source(source).map(lambda n: n * 10).filter(lambda n: n > 0)
    assert await chain.first() == 10
    modified = chain.insert_after(1, lambda src: PullMapObj(src, lambda n: n + 1))
    assert await modified.collect() == [21, 31, 41]
    await settle()


async def test_as_type_only_retypes_the_chain_and_consumes_the_old_reference() -> None:
    merged = chain_of(1, 2).merge_concat(numbers(3))
    assert await merged.first() == 1
    typed = merged.as_type(int)
    assert typed is not merged and merged.consumed and not typed.consumed
    assert typed.links == merged.links
    with pytest.raises(ChainConsumedError):
        await merged.first()
    assert await typed.map(lambda n: n * 10).collect() == [20, 30]  # goes on where it was
    # Nothing is checked or converted: it is a cast for the type checker.
    assert await chain_of("a", None).as_type(int).collect() == ["a", None]


async def test_mutation_refuses_a_link_it_cannot_rewire() -> None:
    async def raw(src: Any) -> AsyncGenerator[Any, None]:
        async for item in src:
            yield item

    chain = chain_of(1, 2).pipe(raw).map(str)
    assert await chain.remove(1).collect() == ["1", "2"]  # the map can be rewired
    chain = chain_of(1, 2).map(str).pipe(raw)
    with pytest.raises(TypeError, match="rewire"):
        chain.remove(1)
    assert not chain.consumed


# -- closing -----------------------------------------------------------------------------------


@both
async def test_break_closes_every_link_and_the_source(compiled: bool) -> None:
    source = TrackedSource(range(10))
    chain = PullChain.from_source(source).map(lambda n: n).eager(2).filter(lambda n: True)
    links = chain.links[1:]
    pulled = ready(chain, compiled)
    async for item in pulled:
        if item == 2:
            break
    await settle()
    assert source.closed and pulled.done
    stages = pulled.stages if compiled else links
    assert all(stage.done for stage in stages)


async def test_aclose_closes_every_link_tail_first() -> None:
    source = TrackedSource(range(10))
    chain = PullChain.from_source(source).map(lambda n: n).window(3)
    assert await chain.first() == [0, 1, 2]
    await chain.aclose()
    assert source.closed and chain.closed
    assert all(link.closed for link in chain.links[1:])
    assert await chain.first() is None


async def test_async_with_closes() -> None:
    source = TrackedSource(range(10))
    async with PullChain.from_source(source).map(str) as chain:
        assert await chain.__anext__() == "0"
    assert source.closed


@both
async def test_close_is_graceful_and_reaches_the_source(compiled: bool) -> None:
    source = SourceBufferObj(range(10), one_shot=True)
    chain = ready(PullChain.from_source(source).map(lambda n: n * 2), compiled)
    seen = []
    async for item in chain:
        seen.append(item)
        if item == 2:
            chain.close()
    assert seen == [0, 2]
    assert source.closing and chain.closed


@both
async def test_cancelling_the_consumer_closes_every_link(compiled: bool) -> None:
    source = TrackedSource(range(100), delay=0.01)
    chain = ready(PullChain.from_source(source).map(lambda n: n).window(2), compiled)
    seen: list[Any] = []

    async def consume() -> None:
        async for batch in chain:
            seen.append(batch)

    task = asyncio.ensure_future(consume())
    while not seen:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert source.closed and chain.done


@both
async def test_athrow_raises_in_the_tail_and_closes(compiled: bool) -> None:
    source = TrackedSource(range(5))
    chain = ready(PullChain.from_source(source).map(lambda n: n * 2), compiled)
    assert await chain.__anext__() == 0
    with pytest.raises(KeyError, match="stop"):
        await chain.athrow(KeyError("stop"))
    assert source.closed and chain.closed


@both
async def test_an_error_reaches_the_consumer_with_its_traceback_and_closes(compiled: bool) -> None:
    source = TrackedSource([1, 2, 0, 4])

    def invert(n: int) -> float:
        return 1 / n

    chain = PullChain.from_source(source).map(invert).filter(lambda n: True)
    error = await assert_raises(ready(chain, compiled), ZeroDivisionError, items=[1.0, 0.5])
    assert "invert" in [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert source.closed


async def test_restart_reopens_every_link() -> None:
    source = SourceBufferObj([1, 2])
    chain = PullChain.from_source(source).map(lambda n: n * 10)
    assert await chain.collect() == [10, 20]
    source.buffer.extend([3, 4])
    await chain.aclose()
    chain.restart()
    assert not chain.done
    assert await chain.collect() == [30, 40]


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda c: c.map(1), TypeError, "transform"),
        (lambda c: c.flat_map(None), TypeError, "transform"),
        (lambda c: c.filter("x"), TypeError, "predicate"),
        (lambda c: c.dedupe(5), TypeError, "obj2id"),
        (lambda c: c.reduce(3), TypeError, "reducer"),
        (lambda c: c.window(0), ValueError, "size"),
        (lambda c: c.window(2.5), TypeError, "size"),
        (lambda c: c.window_timeout(0, 1), ValueError, "size"),
        (lambda c: c.window_timeout(2, -1), ValueError, "timeout"),
        (lambda c: c.window_timeout(2, 1, timeout_from="soon"), ValueError, "timeout_from"),
        (lambda c: c.buffer(1), TypeError, "condition"),
        (lambda c: c.buffer_reduce(1), TypeError, "reducer"),
        (lambda c: c.eager(0), ValueError, "buffer_size"),
        (lambda c: c.callback(print, 1), TypeError, "callbacks[1]"),
        (lambda c: c.timeout(0), ValueError, "seconds"),
        (lambda c: c.timeout("1"), TypeError, "seconds"),
        (lambda c: c.in_order(None), TypeError, "obj2index"),
        (lambda c: c.in_order("i", start="0"), TypeError, "start"),
        (lambda c: c.turnstile("x", object()), TypeError, "on_turnstile_pass"),
        (lambda c: c.turnstile("x", DefaultChainMetricsCollector(), id=3), TypeError, "id"),
        (lambda c: c.pipe(3), TypeError, "factory"),
        (lambda c: c.pipe(lambda src: [1]), TypeError, "pipe() factory result"),
        (lambda c: c.merge_concat([1]), TypeError, "others[0]"),
        (lambda c: c.merge_race(numbers(), 5), TypeError, "others[1]"),
        (lambda c: c.insert_after(0, 5), TypeError, "factory"),
        (lambda c: c.insert_after(7, PullDedupeObj), IndexError, "index 7"),
        (lambda c: c.remove(True), TypeError, "index"),
    ],
)
def test_bad_arguments_name_the_argument(build: Any, error: type[Exception], name: str) -> None:
    chain = PullChain.from_source(numbers(1))
    with pytest.raises(error, match=re.escape(name)):
        build(chain)


def test_sources_must_be_async_iterables() -> None:
    with pytest.raises(TypeError, match=r"source.*SourceFromIterable"):
        PullChain.from_source([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sources\[1\]"):
        PullChain.concat(numbers(1), [2])  # type: ignore[arg-type]
    assert isinstance(PullChain.from_source(SourceFromIterable([1])).link_at(0), SourceFromIterable)


async def test_window_link_types() -> None:
    chain = chain_of(1, 2, 3).window(2)
    assert isinstance(chain.link_at(1), PullWindowObj)
    await assert_items(chain, [[1, 2], [3]])


def test_the_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "pull_chain.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "compiled:    ['5:alice logout']" in done.stdout
