"""BidirectionalChain: request in, response out (FEATURES 2.8.3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest

from pullpush import BidirectionalChain


async def test_of_map_and_then_compose_processors() -> None:
    async def shout(s: str) -> str:
        return s.upper()

    def counter() -> Callable[[str], str]:
        n = 0

        def number(s: str) -> str:
            nonlocal n
            n += 1
            return f"{n}:{s}"

        return number

    chain = BidirectionalChain.of(str.strip).map(shout).then(counter)
    assert chain.length == 3
    assert await chain.asend("  hi ") == "1:HI"
    assert await chain.asend("yo") == "2:YO"


async def test_fluent_methods_return_new_chains_with_their_own_state() -> None:
    calls: list[str] = []

    def factory() -> Callable[[int], int]:
        calls.append("built")
        total = 0

        def add(n: int) -> int:
            nonlocal total
            total += n
            return total

        return add

    base = BidirectionalChain.from_factory(factory)
    extended = base.map(lambda n: n * 10)
    assert calls == []  # built lazily
    assert await base.asend(1) == 1
    assert await base.asend(1) == 2
    assert await extended.asend(1) == 10  # its own stage state
    assert calls == ["built", "built"] and base.length == 1 and extended.length == 2


async def test_identity_and_tap() -> None:
    seen: list[int] = []

    async def record(v: int) -> None:
        seen.append(v)

    identity: BidirectionalChain[int, int] = BidirectionalChain.identity()
    assert identity.length == 1
    chain = identity.tap(seen.append).tap(record).map(lambda v: v + 1)
    assert chain.length == 4
    assert await chain.asend(5) == 6 and seen == [5, 5]


async def test_from_generator_primes_automatically() -> None:
    closed: list[bool] = []

    async def running_average() -> AsyncGenerator[float, float]:
        total, count = 0.0, 0
        value = yield 0.0  # discarded by priming
        try:
            while True:
                total += value
                count += 1
                value = yield total / count
        finally:
            closed.append(True)

    chain = BidirectionalChain.from_generator(running_average)
    assert await chain.asend(10) == 10
    assert await chain.asend(20) == 15
    await chain.aclose()
    assert closed == [True]


async def test_a_stage_error_propagates_and_leaves_the_chain_open() -> None:
    def picky(n: int) -> int:
        if n < 0:
            raise ValueError(n)
        return n

    chain = BidirectionalChain.of(picky).map(lambda n: n * 2)
    with pytest.raises(ValueError):
        await chain.asend(-1)
    assert not chain.closed
    assert await chain.asend(2) == 4


async def test_close_then_send_raises_stop_async_iteration() -> None:
    chain = BidirectionalChain.of(str)
    await chain.aclose()
    await chain.aclose()  # idempotent
    assert chain.closed
    with pytest.raises(StopAsyncIteration):
        await chain.asend(1)


async def test_athrow_closes_and_rethrows() -> None:
    chain = BidirectionalChain.of(str)
    error = KeyError("x")
    with pytest.raises(KeyError) as raised:
        await chain.athrow(error)
    assert raised.value is error and chain.closed
    with pytest.raises(RuntimeError, match="boom"):
        await BidirectionalChain.of(str).athrow(RuntimeError, RuntimeError("boom"))


async def test_concurrent_calls_take_turns_in_arrival_order() -> None:
    active = 0
    peak = 0

    def factory() -> Callable[[int], Any]:
        seen: list[int] = []

        async def stage(n: int) -> list[int]:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0)
            seen.append(n)
            active -= 1
            return list(seen)

        return stage

    chain = BidirectionalChain.from_factory(factory)
    results = await asyncio.gather(*(chain.asend(i) for i in range(5)))
    assert results == [list(range(i + 1)) for i in range(5)] and peak == 1


async def test_close_during_calls_waits_for_them_before_closing_stages() -> None:
    closed: list[bool] = []

    async def echo() -> AsyncGenerator[int, int]:
        value = yield 0
        try:
            while True:
                await asyncio.sleep(0)
                value = yield value
        finally:
            closed.append(True)

    chain = BidirectionalChain.from_generator(echo)
    calls = [asyncio.ensure_future(chain.asend(i)) for i in range(3)]
    await asyncio.sleep(0)
    await chain.aclose()
    assert await asyncio.gather(*calls) == [0, 1, 2]
    assert closed == [True]


async def test_async_factory_and_build_failure_is_retried() -> None:
    attempts: list[int] = []

    async def factory() -> Callable[[int], int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("not yet")
        return lambda n: n + 100

    chain = BidirectionalChain.from_factory(factory)
    with pytest.raises(OSError):
        await chain.asend(1)
    assert await chain.asend(1) == 101


async def test_then_accepts_another_chain() -> None:
    first = BidirectionalChain.of(lambda n: n + 1)
    second = BidirectionalChain.of(lambda n: n * 2).map(str)
    composed = first.then(second)
    assert composed.length == 3 and await composed.asend(1) == "4"


async def test_anext_sends_none() -> None:
    chain = BidirectionalChain.of(lambda v: v is None)
    assert await chain.__anext__() is True


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="processor"):
        BidirectionalChain.of(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="factory"):
        BidirectionalChain.from_factory(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback"):
        BidirectionalChain.identity().tap(1)  # type: ignore[arg-type]
