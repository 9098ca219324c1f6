"""PrioritySourceObj and its aging heap: order, aging, closing, and a brute-force check."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import PrioritySourceObj, SourceClosedError
from pullpush.scheduling._aging import AgingQueue
from pullpush.testing import ManualClock, assert_closed, settle


async def test_highest_priority_first_and_ties_first_in_first_out() -> None:
    source: PrioritySourceObj[str] = PrioritySourceObj()
    for item, priority in [("low", 1), ("a", 5), ("b", 5), ("high", 9)]:
        source.enqueue(item, priority)
    source.close_source()
    assert [x async for x in source] == ["high", "a", "b", "low"]
    assert_closed(source)


async def test_aging_lets_a_waiting_item_overtake_up_to_the_cap() -> None:
    clock = ManualClock()
    source: PrioritySourceObj[str] = PrioritySourceObj(
        aging_rate=1.0, max_age_boost=3.0, clock=clock
    )
    source.enqueue("old", 1)
    clock.advance(2.5)
    source.enqueue("new", 3)
    assert source.peek() == "old"  # 1 + 2.5 > 3
    source.enqueue("urgent", 5)
    clock.advance(10.0)
    assert source.peek() == "urgent"  # old is capped at 1 + 3 < 5 + 3
    await source.aclose()


async def test_a_pull_yields_what_peek_showed_even_if_aging_reorders() -> None:
    clock = ManualClock()
    source: PrioritySourceObj[str] = PrioritySourceObj(aging_rate=1.0, clock=clock)
    source.enqueue("a", 2)
    clock.advance(1.0)
    source.enqueue("b", 2.5)
    assert source.peek() == "a"  # 3 > 2.5
    clock.advance(0.0)
    assert await anext(source) == "a"
    await source.aclose()


async def test_an_enqueue_after_peek_is_considered_by_the_next_pull() -> None:
    source: PrioritySourceObj[str] = PrioritySourceObj()
    source.enqueue("a", 1)
    assert source.peek() == "a"
    source.enqueue("b", 2)
    assert await anext(source) == "b"
    await source.aclose()


async def test_open_and_empty_source_waits_for_an_enqueue() -> None:
    source: PrioritySourceObj[int] = PrioritySourceObj()
    pull = asyncio.create_task(anext(source))
    await settle()
    assert not pull.done()
    source.enqueue(7, 0)
    assert await pull == 7
    await source.aclose()


async def test_close_source_drains_then_ends_and_refuses_more() -> None:
    source: PrioritySourceObj[int] = PrioritySourceObj()
    source.enqueue(1, 0)
    pull = asyncio.create_task(anext(source))
    second = asyncio.create_task(anext(source))
    await settle()
    source.close_source()
    assert source.closed
    assert await pull == 1
    with pytest.raises(StopAsyncIteration):
        await second
    with pytest.raises(SourceClosedError):
        source.enqueue(2, 0)


async def test_size_peek_and_repr() -> None:
    source: PrioritySourceObj[str] = PrioritySourceObj()
    assert source.peek() is None
    source.enqueue("x", 1)
    assert (source.size, len(source), source.peek()) == (1, 1, "x")
    assert repr(source) == "<PrioritySourceObj open size=1>"
    await source.aclose()
    assert source.closed


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"aging_rate": -1}, ValueError, "aging_rate must be >= 0"),
        ({"max_age_boost": -1}, ValueError, "max_age_boost"),
        ({"aging_rate": "1"}, TypeError, "aging_rate must be a number"),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        PrioritySourceObj(**kwargs)  # type: ignore[arg-type]


def test_bad_priorities() -> None:
    source: PrioritySourceObj[int] = PrioritySourceObj()
    with pytest.raises(ValueError, match="NaN"):
        source.enqueue(1, math.nan)
    with pytest.raises(TypeError, match="priority must be a number"):
        source.enqueue(1, "high")  # type: ignore[arg-type]
    assert source.size == 0


# -- the heap against a brute-force O(n) reference ----------------------------------------

queue_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(-5, 5)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("remove"), st.integers(0, 50)),
        st.tuples(st.just("wait"), st.integers(0, 4)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    boost=st.sampled_from([0.0, 1.0, 3.0, math.inf]),
    ops=queue_ops,
)
def test_aging_heap_pops_what_a_full_scan_would(
    rate: float, boost: float, ops: list[tuple[int | str, ...]]
) -> None:
    # Integer times and priorities with dyadic rates keep every sum exact, so ties
    # are real ties in both implementations.
    queue: AgingQueue[int] = AgingQueue(rate, boost)
    reference: list[tuple[int, float, float]] = []  # (seq, base, enqueued_at)
    entries = {}
    now = 0.0
    for op in ops:
        if op[0] == "push":
            seq = len(entries)
            entries[seq] = queue.push(seq, float(op[1]), now)
            reference.append((seq, float(op[1]), now))
        elif op[0] == "wait":
            now += float(op[1])
        elif op[0] == "remove" and reference:
            seq = reference.pop(int(op[1]) % len(reference))[0]
            queue.remove(entries[seq])
        elif op[0] == "pop":
            best = max(
                reference,
                key=lambda r: (r[1] + min(rate * (now - r[2]), boost), -r[0]),
                default=None,
            )
            popped = queue.pop(now)
            assert (None if popped is None else popped.item) == (None if best is None else best[0])
            if best is not None:
                reference.remove(best)
        assert len(queue) == len(reference)


def test_aging_heap_compacts_removed_entries() -> None:
    queue: AgingQueue[int] = AgingQueue(1.0, 2.0)
    entries = [queue.push(i, 0.0, 0.0) for i in range(1000)]
    for entry in entries[:-1]:
        queue.remove(entry)
    assert len(queue._uncapped) + len(queue._capped) < 100
    assert queue.pop(10.0) is entries[-1]
