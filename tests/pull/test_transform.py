"""Map, flat-map, filter, reduce, buffer-reduce, flatten and callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator

import pytest

from pullpush import (
    PullBufferReduceObj,
    PullCallbackObj,
    PullFilterObj,
    PullFlatMapObj,
    PullFlattenObj,
    PullMapObj,
    PullReduceObj,
    SourceBufferObj,
)
from pullpush.testing import assert_items


def numbers(*items: object) -> SourceBufferObj[object]:
    return SourceBufferObj(items, one_shot=True)


async def test_map_seed_example() -> None:
    squares = PullMapObj(SourceBufferObj([1, 2, 3, 4, 5]), lambda n: n * n)
    assert [x async for x in squares] == [1, 4, 9, 16, 25]


async def test_map_awaits_async_transforms_and_takes_a_new_transform_on_the_next_item() -> None:
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    chain = PullMapObj(numbers(1, 2, 3), double)
    assert await chain.__anext__() == 2
    chain.transform = lambda n: -n
    await assert_items(chain, [-2, -3])


async def test_flat_map_yields_each_inner_item_in_order() -> None:
    async def expand(n: int) -> AsyncGenerator[int, None]:
        for _ in range(n):
            yield n

    await assert_items(PullFlatMapObj(numbers(1, 2, 0, 3), expand), [1, 2, 2, 3, 3, 3])
    await assert_items(PullFlatMapObj(numbers(1, 2), lambda n: [n, n * 10]), [1, 10, 2, 20])


async def test_filter_sync_and_async_and_swappable() -> None:
    async def is_even(n: int) -> bool:
        return n % 2 == 0

    await assert_items(PullFilterObj(numbers(*range(6)), is_even), [0, 2, 4])
    chain = PullFilterObj(numbers(*range(6)), lambda n: n > 3)
    chain.filter = lambda n: n < 2
    await assert_items(chain, [0, 1])


async def test_reduce_yields_every_accumulator_with_functools_argument_order() -> None:
    await assert_items(PullReduceObj(numbers(1, 2, 3), lambda acc, n: acc + n, 10), [11, 13, 16])
    await assert_items(PullReduceObj(numbers("a", "b"), lambda acc, s: acc + s), ["a", "ab"])


async def test_reduce_accumulator_is_public_and_mutable() -> None:
    chain = PullReduceObj(numbers(1, 2, 3), lambda acc, n: acc * n, 1)
    assert await chain.__anext__() == 1
    chain.accum = 100
    await assert_items(chain, [200, 600])
    assert chain.accum == 600


async def test_buffer_reduce_yields_zero_or_more_values_per_input() -> None:
    def pairs() -> object:
        held: list[int] = []

        def reducer(n: int) -> Iterator[tuple[int, int]]:
            held.append(n)
            if len(held) == 2:
                yield (held[0], held[1])
                held.clear()

        return reducer

    await assert_items(PullBufferReduceObj(numbers(1, 2, 3, 4, 5), pairs()), [(1, 2), (3, 4)])  # type: ignore[arg-type]


async def test_flatten_flattens_one_level_but_not_strings() -> None:
    async def agen() -> AsyncGenerator[int, None]:
        yield 7
        yield 8

    source = numbers([1, 2], "ab", (3, [4]), b"xy", 5, agen(), range(2))
    await assert_items(PullFlattenObj(source), [1, 2, "ab", 3, [4], b"xy", 5, 7, 8, 0, 1])


async def test_callbacks_see_every_item_which_passes_unchanged() -> None:
    seen: list[int] = []
    also: list[int] = []

    async def record(n: int) -> str:
        also.append(n)
        return "ignored"

    await assert_items(PullCallbackObj(numbers(1, 2), seen.append, record), [1, 2])
    assert seen == [1, 2] and also == [1, 2]


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda s: PullMapObj(s, 3), "transform"),
        (lambda s: PullFlatMapObj(s, None), "transform"),
        (lambda s: PullFilterObj(s, "x"), "filter"),
        (lambda s: PullReduceObj(s, 0), "reducer"),
        (lambda s: PullBufferReduceObj(s, []), "reducer"),
        (lambda s: PullCallbackObj(s, print, 1), r"callbacks\[1\]"),
    ],
)
def test_non_callables_are_rejected_naming_the_argument(make: object, argument: str) -> None:
    with pytest.raises(TypeError, match=f"{argument} must be callable"):
        make(SourceBufferObj())  # type: ignore[operator]
