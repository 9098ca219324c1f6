"""CompiledPullChain: fused pull chains behave exactly like uncompiled ones."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    ChainConsumedError,
    CompiledPullChain,
    DefaultChainMetricsCollector,
    PullChain,
    PullEagerObj,
    PullMapObj,
    PullOpDescriptor,
    PullTimeoutObj,
    SourceBufferObj,
    SourceFromIterable,
)
from pullpush.testing import TrackedSource, assert_items, assert_raises, settle
from pullpush.testing import run as run_on_loop


def numbers(*items: Any) -> SourceBufferObj[Any]:
    return SourceBufferObj(items, one_shot=True)


def chain_of(*items: Any) -> PullChain[Any]:
    return PullChain.from_source(numbers(*items))


# -- FEATURES 2.8.4 examples --------------------------------------------------------------


async def test_quick_example() -> None:
    compiled = chain_of(*range(1, 11)).filter(lambda x: x % 2 == 0).map(lambda x: x * 3).compile()
    assert await compiled.collect() == [6, 12, 18, 24, 30]
    compiled = chain_of(1, 2, 3, 4, 5).filter(lambda x: x > 2).map(lambda x: x * 10).compile()
    assert await compiled.collect() == [30, 40, 50]


async def test_swapping_the_source_restarts_with_fresh_state() -> None:
    compiled = PullChain.from_source(SourceBufferObj([1, 2, 3])).map(lambda x: x * 10).compile()
    assert await compiled.collect() == [10, 20, 30]
    compiled.source = SourceBufferObj([4, 5])
    assert await compiled.collect() == [40, 50]

    stateful = chain_of(1, 2, 2).dedupe().reduce(lambda acc, n: acc + n, 0).compile()
    assert await stateful.collect() == [1, 3]
    stateful.source = numbers(2, 1, 5)
    assert await stateful.collect() == [2, 3, 8]  # the seen-set and the sum start over


async def test_restart_resets_stateful_operations() -> None:
    source = SourceBufferObj([1, 1, 2])
    compiled = PullChain.from_source(source).dedupe().reduce(lambda acc, n: acc + n).compile()
    assert await compiled.collect() == [1, 3]
    source.buffer.extend([1, 2, 4])
    compiled.restart()
    assert await compiled.collect() == [1, 3, 7]


async def test_compile_consumes_the_pull_chain() -> None:
    chain = chain_of(1, 2).map(str)
    compiled = chain.compile()
    assert isinstance(compiled, CompiledPullChain)
    with pytest.raises(ChainConsumedError):
        await chain.collect()
    assert await compiled.collect() == ["1", "2"]


async def test_ops_describe_the_recipe() -> None:
    def key(n: int) -> int:
        return n % 3

    compiled = chain_of(1).map(str).dedupe(key, consecutive=True).window(2).compile()
    assert compiled.ops == (
        PullOpDescriptor("map", (str,)),
        PullOpDescriptor("dedupe", (key,), {"consecutive": True}),
        PullOpDescriptor("window", (2,), {"yield_remainder": True}),
    )
    assert [op.kind for op in compiled.ops] == ["map", "dedupe", "window"]
    assert "map, dedupe, window" in repr(compiled)
    add = chain_of(1).reduce(max).reduce(max, 0).compile()
    assert [op.args for op in add.ops] == [(max,), (max, 0)]  # no accum: no sentinel


async def test_the_fast_path_is_one_fused_generator() -> None:
    compiled = (
        chain_of(1, 2, 3)
        .map(lambda n: n)
        .filter(lambda n: True)
        .dedupe()
        .reduce(lambda a, n: a + n)
        .callback(print)
        .compile()
    )
    (stage,) = compiled.stages
    assert "async for v in" in stage.code and "while" not in stage.code
    assert stage.code.count("yield v") == 1
    assert compiled._cycle() is stage._cycle()  # the chain is its stage's cycle


async def test_barriers_split_fusion_into_segments() -> None:
    compiled = (
        chain_of(*range(10))
        .map(lambda n: n * 2)
        .filter(lambda n: n > 2)
        .eager(3)
        .window(2)
        .pipe(lambda src: PullMapObj(src, tuple))
        .window_timeout(2, 60)
        .timeout(60)
        .map(len)
        .merge_concat(numbers("end"))
        .compile()
    )
    kinds = [type(stage).__name__ for stage in compiled.stages]
    assert kinds == [
        "_FusedSegment",
        "PullEagerObj",
        "_FusedSegment",
        "PullMapObj",
        "PullWindowTimeoutObj",
        "PullTimeoutObj",
        "_FusedSegment",
        "PullConcatObj",
    ]
    # 4..18 -> (4,6) (8,10) (12,14) (16,18) -> pairs of tuples -> 2, 2, then "end"
    await assert_items(compiled, [2, 2, "end"])


async def test_async_callables_are_awaited_on_the_fast_path() -> None:
    async def even(n: int) -> bool:
        await asyncio.sleep(0)
        return n % 2 == 0

    async def add(acc: int, n: int) -> int:
        return acc + n

    def later(n: int) -> Any:
        async def value() -> int:
            return -n

        return value()  # a sync callable returning an awaitable

    seen: list[int] = []

    async def record(n: int) -> None:
        seen.append(n)

    compiled = chain_of(*range(5)).filter(even).reduce(add, 100).map(later).callback(record)
    assert await compiled.compile().collect() == [-100, -102, -106]
    assert seen == [-100, -102, -106]


async def test_partial_windows_and_buffers_are_yielded_head_first() -> None:
    compiled = chain_of(*range(5)).window(2).flatten().window(3).compile()
    assert await compiled.collect() == [[0, 1, 2], [3, 4]]
    compiled = chain_of(*range(5)).window(2, yield_remainder=False).compile()
    assert await compiled.collect() == [[0, 1], [2, 3]]
    compiled = chain_of(1, 2, 3, 4, 5).buffer(lambda b: len(b) >= 3).compile()
    assert await compiled.collect() == [[1, 2, 3], [4, 5]]


async def test_in_order_is_fused_with_its_end_flush() -> None:
    compiled = chain_of(2, 0, 1, 5, 4).in_order(lambda n: n).map(str).compile()
    assert await compiled.collect() == ["0", "1", "2", "4", "5"]
    repeated = chain_of(0, 0).in_order(lambda n: n).compile()
    await assert_raises(repeated, ValueError, items=[0], match="already seen")


async def test_flat_map_iterates_sync_and_async_results() -> None:
    async def repeat(n: int) -> AsyncGenerator[int, None]:
        for _ in range(n):
            yield n

    async def signs(n: int) -> list[int]:
        return [n, -n]

    compiled = chain_of(1, 2, 0).flat_map(repeat).flat_map(signs).compile()
    assert await compiled.collect() == [1, -1, 2, -2, 2, -2]
    assert await chain_of(1, "ab").flat_map(lambda v: v).compile().collect() == [1, "ab"]
    upper = chain_of("ab", "c").buffer_reduce(lambda s: iter(s.upper())).compile()
    assert await upper.collect() == ["A", "B", "C"]


async def test_turnstile_is_fused_and_swallows_errors() -> None:
    collector = DefaultChainMetricsCollector()

    class Broken:
        def on_turnstile_pass(self, checkpoint: str, item_id: Any = None) -> None:
            raise RuntimeError("metrics down")

    compiled = (
        chain_of(1, 2, 3)
        .turnstile("in", collector)
        .turnstile("broken", Broken())
        .filter(lambda n: n != 2)
        .turnstile("out", collector, id=lambda n: n)
        .compile()
    )
    assert len(compiled.stages) == 1
    assert await compiled.collect() == [1, 3]
    turnstiles = collector.snapshot().turnstiles
    assert turnstiles["in"].passed == 3 and turnstiles["out"].passed == 2


async def test_first_pulls_one_item_and_closes() -> None:
    source = TrackedSource([10, 20, 30])
    compiled = PullChain.from_source(source).map(lambda n: n + 1).compile()
    assert await compiled.first() == 11
    await settle()
    assert source.pulls == 1 and source.closed and compiled.closed
    assert await chain_of().compile().first() is None


async def test_direct_construction_from_descriptors() -> None:
    compiled: CompiledPullChain[Any] = CompiledPullChain(
        numbers(1, 2, 3, 4),
        [("map", (lambda n: n * 2,)), PullOpDescriptor("window", (3,)), ("eager", (1,))],
    )
    assert isinstance(compiled.stages[-1], PullEagerObj)
    assert await compiled.collect() == [[2, 4, 6], [8]]


def test_bad_operations_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown pull operation kind 'zap'"):
        CompiledPullChain(numbers(), [("zap", ())])
    with pytest.raises(TypeError, match="transform"):
        CompiledPullChain(numbers(), [("map", (3,))])
    with pytest.raises(ValueError, match="window_size"):
        CompiledPullChain(numbers(), [("window", (0,))])
    with pytest.raises(TypeError, match="source"):
        CompiledPullChain([1], [])  # type: ignore[arg-type]
    compiled = chain_of(1).compile()
    with pytest.raises(TypeError, match="source"):
        compiled.source = [1]  # type: ignore[assignment]


async def test_reset_refuses_while_a_pull_is_in_flight() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncGenerator[int, None]:
        await gate.wait()
        yield 1

    compiled = PullChain.from_source(slow()).map(str).compile()
    pull = asyncio.ensure_future(compiled.__anext__())
    await settle()
    with pytest.raises(RuntimeError, match="in flight"):
        compiled.source = numbers(2)
    with pytest.raises(RuntimeError, match="in flight"):
        compiled.restart()
    gate.set()
    assert await pull == "1"
    compiled.source = numbers(2)
    assert await compiled.collect() == ["2"]


async def test_reset_refuses_while_an_eager_stage_reads_ahead() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncGenerator[int, None]:
        yield 1
        await gate.wait()
        yield 2

    compiled = PullChain.from_source(slow()).eager(4).map(str).compile()
    assert await compiled.__anext__() == "1"
    with pytest.raises(RuntimeError, match="reading ahead"):
        compiled.restart()
    await compiled.aclose()
    compiled.source = numbers(3)
    assert await compiled.collect() == ["3"]


async def test_pipe_factories_are_called_again_by_compile() -> None:
    made: list[Any] = []

    def factory(src: Any) -> PullMapObj[Any, Any]:
        made.append(src)
        return PullMapObj(src, lambda n: -n)

    compiled = chain_of(1, 2).map(lambda n: n).pipe(factory).compile()
    assert len(made) == 2 and made[-1] is compiled.stages[0]
    assert await compiled.collect() == [-1, -2]


# -- a SourceFromIterable over a sync iterable, read inline -----------------------------------


async def both(scenario: Callable[[bool], Awaitable[Any]]) -> Any:
    """Run ``scenario(compiled)`` on the uncompiled and the compiled chain: they agree."""
    plain = await scenario(False)
    fused = await scenario(True)
    assert fused == plain
    return fused


def odd(n: int) -> bool:
    return n % 2 == 1


async def test_a_sync_source_is_read_inline_by_the_head_segment() -> None:
    source = SourceFromIterable(range(10))
    compiled = PullChain.from_source(source).map(lambda n: n + 1).filter(odd).compile()
    (stage,) = compiled.stages
    assert "_src._next_run()" in stage.code and "async for" not in stage.code
    assert await compiled.collect() == [1, 3, 5, 7, 9]
    assert source.done and compiled.done
    assert not source.closed

    class Counted(SourceFromIterable[int]):
        """A subclass may change the loop: read with the generic one."""

    for other in (SourceFromIterable(agen([1, 2])), Counted([1, 2])):
        compiled = PullChain.from_source(other).map(str).compile()
        assert "async for v in" in compiled.stages[0].code
        assert await compiled.collect() == ["1", "2"]


async def test_inline_source_restart_continues_from_the_iterator() -> None:
    async def scenario(compiled: bool) -> Any:
        source = SourceFromIterable(iter(range(10)))
        chain: Any = PullChain.from_source(source).filter(odd).map(lambda n: n * 10)
        chain = chain.compile() if compiled else chain
        first = [await chain.__anext__() for _ in range(2)]
        chain.restart()  # the source does not rewind
        return first, await chain.collect(), source.done, chain.done

    assert await both(scenario) == ([10, 30], [50, 70, 90], True, True)


async def test_inline_source_close_mid_stream_ends_after_the_item_and_flushes() -> None:
    def numbers(finalized: list[str]) -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            finalized.append("numbers")

    async def graceful(compiled: bool) -> Any:
        finalized: list[str] = []
        source = SourceFromIterable(numbers(finalized))

        def close_at_7(n: int) -> int:
            if n == 7:
                source.close()  # graceful: 8 is not pulled, the partial window is yielded
            return n

        chain: Any = PullChain.from_source(source).filter(odd).map(close_at_7).window(3)
        chain = chain.compile() if compiled else chain
        got = await chain.collect()
        return got, source.closing, source.done, finalized[:]

    assert await both(graceful) == ([[1, 3, 5], [7]], True, True, [])

    async def at_once(compiled: bool) -> Any:
        finalized: list[str] = []
        source = SourceFromIterable(numbers(finalized))
        chain: Any = PullChain.from_source(source).map(lambda n: n * 2)
        chain = chain.compile() if compiled else chain
        got = []
        async for item in chain:
            got.append(item)
            await chain.aclose()  # at once: the generator's finally runs
        return got, source.closed, finalized

    assert await both(at_once) == ([0], True, ["numbers"])


async def test_inline_source_errors_keep_their_traceback_and_close_the_chain() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        raise KeyError("source broke")

    async def scenario(compiled: bool) -> Any:
        source = SourceFromIterable(numbers())
        chain: Any = PullChain.from_source(source).map(lambda n: n * 10)
        chain = chain.compile() if compiled else chain
        error = await assert_raises(chain, KeyError, items=[10], match="source broke")
        frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        return "numbers" in frames, source.closed

    assert await both(scenario) == (True, True)


async def test_inline_source_peeks_between_and_during_pulls() -> None:
    async def scenario(compiled: bool) -> Any:
        source = SourceFromIterable(range(10))
        peeked: list[Any] = []

        def look(n: int) -> int:
            if n == 4:
                peeked.append(source.peek())  # takes 5 ahead of the loop
            return n

        chain: Any = PullChain.from_source(source).map(look).filter(lambda n: n != 4)
        chain = chain.compile() if compiled else chain
        got = [await chain.__anext__(), await chain.__anext__()]
        peeked.append(source.peek())  # 2 ahead, between pulls
        got += await chain.collect()
        return got, peeked, source.done

    got, peeked, done = await both(scenario)
    assert got == [0, 1, 2, 3, 5, 6, 7, 8, 9] and peeked == [2, 5] and done


async def test_a_callable_closing_the_inline_source_stops_it_before_the_next_item() -> None:
    async def scenario(compiled: bool) -> Any:
        pulled: list[int] = []

        def numbers() -> Iterator[int]:
            for n in range(10):
                pulled.append(n)
                yield n

        source = SourceFromIterable(numbers())

        def stop_at_3(n: int) -> bool:
            if n == 3:
                source.close()
            return n % 3 != 0  # 3 itself is dropped: the close is seen before 4

        chain: Any = PullChain.from_source(source).filter(stop_at_3)
        chain = chain.compile() if compiled else chain
        return await chain.collect(), pulled

    assert await both(scenario) == ([1, 2], [0, 1, 2, 3])


async def test_a_swapped_segment_source_is_read_with_the_generic_loop() -> None:
    compiled = PullChain.from_source(SourceFromIterable([1, 2])).map(str).compile()
    (stage,) = compiled.stages
    stage.source = numbers(3, 4)  # a link's source is mutable: applies to its next cycle
    assert await compiled.collect() == ["3", "4"]


# -- compiled == uncompiled, for random recipes ---------------------------------------------


def total(value: Any) -> int:
    """Reduce any value of these recipes (ints, nested lists and tuples) to an int."""
    if isinstance(value, (list, tuple)):
        return sum(map(total, value))
    return int(value)


def either(fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """``fn`` itself, or an async function that yields to the loop and returns its result."""
    if not is_async:
        return fn

    async def run_async(*args: Any) -> Any:
        await asyncio.sleep(0)
        return fn(*args)

    return run_async


async def agen(values: list[Any]) -> AsyncGenerator[Any, None]:
    for value in values:
        yield value


Step = tuple[str, int, bool]

KINDS = [
    "map",
    "filter",
    "dedupe",
    "reduce",
    "callback",
    "window",
    "buffer",
    "flat_map",
    "flatten",
    "buffer_reduce",
    "in_order",
    "eager",
    "pipe",
    "timeout",
    "window_timeout",
    "merge_concat",
]


SOURCES = ["async generator", "sync iterator (inline)", "async iterable"]


def build_chain(
    source: list[int], recipe: list[Step], log: list[Any], kind: str = SOURCES[0]
) -> PullChain[Any]:
    head: Any = agen(source)
    if kind == SOURCES[1]:
        head = SourceFromIterable(iter(source))
    elif kind == SOURCES[2]:
        head = SourceFromIterable(agen(source))
    chain: PullChain[Any] = PullChain.from_source(head)
    for position, (kind, n, flag) in enumerate(recipe):
        if kind == "map":
            # n == 3 divides by zero on some values: errors must match too
            chain = chain.map(
                either(lambda v, n=n: 60 // (total(v) % 4) if n == 3 else total(v) + n, flag)
            )
        elif kind == "filter":
            chain = chain.filter(either(lambda v, n=n: total(v) % (n + 1) != 0, flag))
        elif kind == "dedupe":
            chain = chain.dedupe(
                None if n == 1 else lambda v, n=n: total(v) % (n + 2), consecutive=flag
            )
        elif kind == "reduce":
            add = either(lambda acc, v: total(acc) + total(v), flag)
            chain = chain.reduce(add, n) if n > 1 else chain.reduce(add)
        elif kind == "callback":
            chain = chain.callback(either(lambda v, p=position: log.append((p, total(v))), flag))
        elif kind == "window":
            chain = chain.window(n, yield_remainder=flag)
        elif kind == "buffer":
            cond = either(lambda buf, n=n: total(buf) % 3 == n % 3, flag)
            chain = chain.buffer(cond, yield_remainder=n != 2)
        elif kind == "flat_map":
            chain = chain.flat_map(
                either(lambda v, n=n: v if n == 1 else [v] * (n - 1), flag)
                if n < 3
                else lambda v: agen([v, total(v) + 1])
            )
        elif kind == "flatten":
            chain = chain.flatten()
        elif kind == "buffer_reduce":
            chain = chain.buffer_reduce(either(lambda v, n=n: [v] * (total(v) % n), flag))
        elif kind == "in_order":
            chain = chain.in_order(lambda v, n=n: total(v) % (n + 3), n - 1, strict=flag)
        elif kind == "eager":
            chain = chain.eager(n)
        elif kind == "pipe":
            chain = chain.pipe(lambda src: PullMapObj(src, lambda v: v))
        elif kind == "timeout":
            chain = chain.timeout(60)
        elif kind == "window_timeout":
            chain = chain.window_timeout(n, 60, yield_remainder=flag)
        else:
            chain = chain.merge_concat(agen([n, n + 1]))
    return chain


async def outcome(chain: Any) -> tuple[list[Any], Any]:
    items: list[Any] = []
    try:
        async for item in chain:
            items.append(item)
    except Exception as error:  # ZeroDivisionError, ValueError, TypeError (unhashable)
        return items, (type(error), str(error))
    return items, None


@settings(max_examples=240, deadline=None)
@given(
    recipe=st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(min_value=1, max_value=3), st.booleans()),
        max_size=6,
    ),
    source=st.lists(st.integers(min_value=0, max_value=12), max_size=10),
    kind=st.sampled_from(SOURCES),
)
def test_compiled_chain_matches_the_uncompiled_chain(
    loop_kind: str, recipe: list[Step], source: list[int], kind: str
) -> None:
    async def scenario() -> None:
        log: list[Any] = []
        plain = await outcome(build_chain(source, recipe, log, kind))
        fused_log: list[Any] = []
        fused = await outcome(build_chain(source, recipe, fused_log, kind).compile())
        assert fused == plain
        if plain[1] is None or not any(kind == "eager" for kind, _, _ in recipe):
            # Each callback sees the same items in the same order (eager reads ahead
            # concurrently, so how far it got before an error may differ).
            assert sorted(fused_log, key=lambda e: e[0]) == sorted(log, key=lambda e: e[0])
        await settle()

    run_on_loop(scenario(), loop=loop_kind)


def test_timeout_stage_is_kept_as_is() -> None:
    compiled = chain_of(1).timeout(5).compile()
    assert isinstance(compiled.stages[0], PullTimeoutObj)
