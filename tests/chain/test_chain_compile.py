"""CompiledPushChain: fused push chains behave exactly like uncompiled ones."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    CompiledPushChain,
    PushChainBuilder,
    PushMapObj,
    PushOpDescriptor,
    PushSerialObj,
    PushWindowTimeoutObj,
    SinkCollectObj,
)
from pullpush.testing import RecordingSink
from pullpush.testing import run as run_on_loop


async def run(chain: Any, values: Any) -> None:
    for v in values:
        await chain.asend(v)
    await chain.aclose()


async def test_compile_fuses_the_recipe_into_one_link() -> None:
    builder = PushChainBuilder.start().map(lambda n: n + 1).filter(lambda n: n % 2).compile()
    chain, out = builder.to_array()
    assert chain.length == 2 and isinstance(chain.head, CompiledPushChain)
    assert [op.kind for op in chain.head.ops] == ["map", "filter"]
    await run(chain, range(6))
    assert out == [1, 3, 5]


async def test_compile_is_position_independent() -> None:
    early = PushChainBuilder.start().compile().map(str).to_array().chain
    late = PushChainBuilder.start().map(str).compile().to_array().chain
    assert isinstance(early.head, CompiledPushChain) and isinstance(late.head, CompiledPushChain)


async def test_barriers_split_fusion_into_segments() -> None:
    chain, out = (
        PushChainBuilder.start()
        .map(lambda n: n * 2)
        .filter(lambda n: n > 2)
        .serial()
        .window(2)
        .pipe(lambda sink: PushMapObj(sink, tuple))
        .window_timeout(2, 60)
        .map(len)
        .compile()
        .to_array()
    )
    kinds = [type(link).__name__ for link in chain.links]
    assert kinds == [
        "CompiledPushChain",
        "PushSerialObj",
        "CompiledPushChain",
        "PushMapObj",
        "PushWindowTimeoutObj",
        "CompiledPushChain",
        "SinkCollectObj",
    ]
    assert isinstance(chain.links[1], PushSerialObj)
    assert isinstance(chain.links[4], PushWindowTimeoutObj)
    await run(chain, range(8))
    # 4,6,8,10,12,14 -> windows (4,6) (8,10) (12,14) -> pairs of tuples -> len 2, then 1
    assert out == [2, 1]


async def test_async_predicates_and_reducers_are_awaited_on_the_fast_path() -> None:
    async def even(n: int) -> bool:
        await asyncio.sleep(0)
        return n % 2 == 0

    async def add(acc: int, n: int) -> int:
        return acc + n

    chain, out = (
        PushChainBuilder.start()
        .filter(even)
        .reduce(add, 100)
        .map(lambda n: -n)
        .compile()
        .to_array()
    )
    await run(chain, range(5))
    assert out == [-100, -102, -106]


async def test_post_callbacks_run_after_downstream_even_when_a_later_filter_drops() -> None:
    log: list[str] = []
    chain, out = (
        PushChainBuilder.start()
        .post_callback(lambda v: log.append(f"post {v}"))
        .filter(lambda v: v > 1)
        .pre_callback(lambda v: log.append(f"pre {v}"))
        .compile()
        .to_array()
    )
    await run(chain, [1, 2])
    assert log == ["post 1", "pre 2", "post 2"] and out == [2]


async def test_partial_windows_are_flushed_on_close_head_first() -> None:
    chain, out = PushChainBuilder.start().window(2).flatten().window(3).compile().to_array()
    await run(chain, range(5))
    assert out == [[0, 1, 2], [3, 4]]
    chain, out = PushChainBuilder.start().window(2, flush_on_close=False).compile().to_array()
    await run(chain, range(5))
    assert out == [[0, 1], [2, 3]]


async def test_sink_is_mutable_after_compiling() -> None:
    first, second = SinkCollectObj(), SinkCollectObj()
    compiled = CompiledPushChain(first, [PushOpDescriptor("map", (str,))])
    await compiled.asend(1)
    compiled.sink = second
    await compiled.asend(2)
    assert first.buffer == ["1"] and second.buffer == ["2"]
    assert "async def asend" in compiled.source


async def test_compiled_stateful_chain_serialises_concurrent_sends() -> None:
    sink = RecordingSink(yield_to_loop=True)
    chain = PushChainBuilder.start().reduce(operator.add, 0).compile().into(sink)
    await asyncio.gather(*(chain.asend(1) for _ in range(20)))
    assert sink.items == list(range(1, 21)) and sink.max_in_flight == 1


async def test_compiled_stateless_chain_lets_sends_overlap() -> None:
    sink = RecordingSink(yield_to_loop=True)
    chain = PushChainBuilder.start().map(str).compile().into(sink)
    await asyncio.gather(*(chain.asend(i) for i in range(5)))
    assert sorted(sink.items) == ["0", "1", "2", "3", "4"] and sink.max_in_flight > 1


async def test_compiled_chain_stops_when_the_sink_is_done() -> None:
    sink = RecordingSink(done_after=3)
    chain = PushChainBuilder.start().flat_map(lambda n: range(n)).compile().into(sink)
    assert await chain.asend(10) is False
    assert sink.items == [0, 1, 2] and chain.done
    assert await chain.asend(1) is False


async def test_compiled_close_and_throw() -> None:
    sink = RecordingSink()
    chain = PushChainBuilder.start().map(str).compile().into(sink)
    error = KeyError("x")
    await chain.athrow(error)
    assert sink.error_received is error


def test_unfusable_operations_are_rejected_by_the_constructor() -> None:
    with pytest.raises(ValueError, match="serial"):
        CompiledPushChain(SinkCollectObj(), [PushOpDescriptor("serial", ())])


async def test_buffer_reduce_result_is_checked_when_compiled() -> None:
    chain = PushChainBuilder.start().buffer_reduce(lambda v: v).compile().into(SinkCollectObj())
    with pytest.raises(TypeError, match="iterable"):
        await chain.asend(3)


# -- compiled == uncompiled, for random recipes ---------------------------------------------


def score(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return sum(score(v) for v in value)
    return int(value)


def maybe_async(fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    if not is_async:
        return fn

    async def wrapper(*args: Any) -> Any:
        await asyncio.sleep(0)
        return fn(*args)

    return wrapper


OP_KINDS = [
    "map",
    "filter",
    "reduce",
    "pre_callback",
    "post_callback",
    "window",
    "buffer",
    "flat_map",
    "flatten",
    "buffer_reduce",
    "serial",
    "pipe",
]

recipes = st.lists(
    st.tuples(st.sampled_from(OP_KINDS), st.integers(min_value=1, max_value=3), st.booleans()),
    max_size=7,
)


def build(recipe: list[tuple[str, int, bool]], log: list[Any]) -> PushChainBuilder[Any, Any]:
    b = PushChainBuilder.start()
    for position, (kind, n, is_async) in enumerate(recipe):
        if kind == "map":
            b = b.map(maybe_async(lambda v, n=n: score(v) + n, is_async))
        elif kind == "filter":
            b = b.filter(maybe_async(lambda v, n=n: score(v) % (n + 1) != 0, is_async))
        elif kind == "reduce":
            reducer = maybe_async(lambda acc, v: score(acc) + score(v), is_async)
            b = b.reduce(reducer, 0) if n > 1 else b.reduce(reducer)
        elif kind in ("pre_callback", "post_callback"):
            record = maybe_async(lambda v, p=position: log.append((p, score(v))), is_async)
            b = b.pre_callback(record) if kind == "pre_callback" else b.post_callback(record)
        elif kind == "window":
            b = b.window(n, flush_on_close=is_async)
        elif kind == "buffer":
            b = b.buffer(maybe_async(lambda buf, n=n: score(buf) % 3 == n % 3, is_async))
        elif kind == "flat_map":
            b = b.flat_map(maybe_async(lambda v, n=n: [v] * (n - 1) if n > 1 else v, is_async))
        elif kind == "flatten":
            b = b.flatten()
        elif kind == "buffer_reduce":
            b = b.buffer_reduce(maybe_async(lambda v, n=n: [v] * (score(v) % n), is_async))
        elif kind == "serial":
            b = b.serial()
        else:
            b = b.pipe(lambda sink: PushMapObj(sink, lambda v: v))
    return b


@settings(max_examples=120, deadline=None)
@given(recipe=recipes, values=st.lists(st.integers(min_value=0, max_value=20), max_size=12))
def test_compiled_chain_matches_the_uncompiled_chain(
    loop_kind: str, recipe: list[tuple[str, int, bool]], values: list[int]
) -> None:
    async def outcome(compiled: bool) -> tuple[list[Any], list[Any], bool]:
        log: list[Any] = []
        builder = build(recipe, log)
        sink = RecordingSink(done_after=8)
        chain = (builder.compile() if compiled else builder).into(sink)
        accepting = True
        for v in values:
            accepting = await chain.asend(v)
        await chain.aclose()
        return sink.items, log, accepting

    async def scenario() -> None:
        assert await outcome(compiled=True) == await outcome(compiled=False)

    run_on_loop(scenario(), loop=loop_kind)
