"""Type checks of :func:`pullpush.map` and :func:`pullpush.map_sync`, run by mypy
(``[tool.mypy] files``), never by pytest (the name does not match ``test_*.py``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Literal

from typing_extensions import assert_type

import pullpush
from pullpush import MapStream


def square(n: int) -> int:
    return n * n


async def describe(n: int) -> str:
    return str(n)


async def numbers() -> AsyncGenerator[int, None]:
    yield 1


def check_errors(mode: Literal["raise", "return"]) -> None:
    assert_type(pullpush.map(square, [1], errors=mode), MapStream[int | BaseException])


async def map_is_typed() -> None:
    assert_type(pullpush.map(square, range(3)), MapStream[int])
    assert_type(pullpush.map(describe, [1, 2]), MapStream[str])
    assert_type(pullpush.map(square, numbers()), MapStream[int])
    assert_type(pullpush.map(lambda n: n / 2, [1]), MapStream[float])
    assert_type(await pullpush.map(square, range(3)), list[int])
    assert_type(await pullpush.map(describe, [1], executor="thread"), list[str])
    async for result in pullpush.map(square, range(3), ordered=False):
        assert_type(result, int)
    returned = pullpush.map(square, [1], errors="return")
    assert_type(returned, MapStream[int | BaseException])
    assert_type(pullpush.map(square, [1], errors="raise"), MapStream[int])
    pullpush.map(square, ["a"])  # type: ignore[arg-type]
    pullpush.map(describe, "ab")  # type: ignore[arg-type]


def map_sync_is_typed() -> None:
    assert_type(pullpush.map_sync(square, range(3)), Iterator[int])
    assert_type(pullpush.map_sync(describe, [1]), Iterator[str])
    assert_type(pullpush.map_sync(square, [1], errors="return"), Iterator[int | BaseException])
    pullpush.map_sync(square, ["a"])  # type: ignore[arg-type]
