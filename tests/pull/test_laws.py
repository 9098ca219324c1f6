"""Operator laws, checked with hypothesis against their list equivalents: no operator
loses or duplicates an item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    PullConcatObj,
    PullFilterObj,
    PullMapObj,
    PullRaceObj,
    PullRaceRobinObj,
    PullRoundRobinObj,
    PullZipObj,
    SourceBufferObj,
)
from pullpush.testing import collect, run

ints = st.lists(st.integers(), max_size=30)
many = st.lists(st.lists(st.integers(), max_size=12), min_size=1, max_size=5)
# Per-item delays (in event-loop turns) make races interleave differently per example.
turns = st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8)


def source(values: list[int]) -> SourceBufferObj[int]:
    # A copy: a SourceBufferObj drains the list it is given, and the laws compare with it.
    return SourceBufferObj(list(values), one_shot=True)


async def jittery(values: list[int], pattern: list[int]) -> AsyncGenerator[int, None]:
    for i, value in enumerate(values):
        for _ in range(pattern[i % len(pattern)]):
            await asyncio.sleep(0)
        yield value


def pull(stream: Any, loop_kind: str) -> list[Any]:
    return run(collect(stream), loop=loop_kind)


@settings(max_examples=60, deadline=None)
@given(values=ints)
def test_map_filter_law(values: list[int], loop_kind: str) -> None:
    chain = PullFilterObj(PullMapObj(source(values), lambda x: x * 3), lambda x: x % 2 == 0)
    assert pull(chain, loop_kind) == [x * 3 for x in values if (x * 3) % 2 == 0]


@settings(max_examples=60, deadline=None)
@given(lists=many)
def test_concat_law(lists: list[list[int]], loop_kind: str) -> None:
    expected = [x for values in lists for x in values]
    assert pull(PullConcatObj([source(v) for v in lists]), loop_kind) == expected


@settings(max_examples=60, deadline=None)
@given(lists=many)
def test_zip_law(lists: list[list[int]], loop_kind: str) -> None:
    longest = max(len(v) for v in lists)
    expected = [tuple(v[i] for v in lists if i < len(v)) for i in range(longest)]
    assert pull(PullZipObj([source(v) for v in lists]), loop_kind) == expected


@settings(max_examples=60, deadline=None)
@given(lists=many)
def test_round_robin_law(lists: list[list[int]], loop_kind: str) -> None:
    longest = max(len(v) for v in lists)
    expected = [v[i] for i in range(longest) for v in lists if i < len(v)]
    assert pull(PullRoundRobinObj([source(v) for v in lists]), loop_kind) == expected


@settings(max_examples=60, deadline=None)
@given(lists=many, pattern=turns)
def test_race_preserves_every_item_exactly_once_in_source_order(
    lists: list[list[int]], pattern: list[int], loop_kind: str
) -> None:
    sources = [jittery(v, pattern[i:] + pattern[:i]) for i, v in enumerate(lists)]
    results = pull(PullRaceObj(sources), loop_kind)
    for i, values in enumerate(lists):
        assert [r.value for r in results if r.source is sources[i]] == values
    assert len(results) == sum(len(v) for v in lists)


@settings(max_examples=60, deadline=None)
@given(lists=many, pattern=turns, pace=turns, read_ahead=st.integers(min_value=0, max_value=3))
def test_race_read_ahead_bounds_every_source_and_loses_nothing(
    lists: list[list[int]], pattern: list[int], pace: list[int], read_ahead: int, loop_kind: str
) -> None:
    # Sources that often never wait and a consumer that sometimes does: the pumps go
    # through every path (full, yielding a turn, parked, let go) with any read-ahead.
    pulled = [0] * len(lists)

    async def counted(i: int, values: list[int]) -> AsyncGenerator[int, None]:
        async for value in jittery(values, pattern[i:] + pattern[:i]):
            pulled[i] += 1
            yield value

    async def scenario() -> list[list[int]]:
        got: list[list[int]] = [[] for _ in lists]
        sources = [counted(i, v) for i, v in enumerate(lists)]
        async for result in PullRaceObj(sources, read_ahead=read_ahead):
            i = sources.index(result.source)
            got[i].append(result.value)
            assert all(pulled[j] - len(got[j]) <= read_ahead + 1 for j in range(len(lists)))
            for _ in range(pace[sum(map(len, got)) % len(pace)]):
                await asyncio.sleep(0)
        return got

    assert run(scenario(), loop=loop_kind) == lists


@settings(max_examples=60, deadline=None)
@given(lists=many, pattern=turns)
def test_race_robin_rounds_hold_one_item_per_live_source(
    lists: list[list[int]], pattern: list[int], loop_kind: str
) -> None:
    tagged = [[(i, x) for x in v] for i, v in enumerate(lists)]
    sources = [jittery(v, pattern[i:] + pattern[:i]) for i, v in enumerate(tagged)]  # type: ignore[arg-type]
    results = pull(PullRaceRobinObj(sources), loop_kind)
    assert sorted(results) == sorted(x for v in tagged for x in v)
    position = 0
    for round_number in range(max(len(v) for v in lists)):
        live = {i for i, v in enumerate(lists) if round_number < len(v)}
        chunk = results[position : position + len(live)]
        assert {i for i, _ in chunk} == live
        position += len(live)
