"""Pull/push operator overhead against hand-written async generators.

    python bench/operators.py [--n 1000000] [--repeats 5] [--loop asyncio|uvloop] [--instructions]

Cases (every one in the same run, interleaved, median of ``--repeats``):

* five-stage pull chain (map, filter, map, dedupe, reduce) as pullpush objects,
  as a fluent ``PullChain`` (which should cost nothing over its links) and as a
  ``CompiledPullChain`` (the five stages fused into one generator), against the
  same work as a hand-written chain of async generators;
* a race over 4 sources (``PullRaceObj``) against an ``asyncio.Queue``-based merge
  (one pump task per source), with sources that hand control to the event loop
  every 8 items (as I/O-bound sources do), and with sources that never do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any

from _harness import Case, arguments, run_benchmark

from pullpush import (
    PullChain,
    PullDedupeObj,
    PullFilterObj,
    PullMapObj,
    PullRaceObj,
    PullReduceObj,
    SourceFromIterable,
)


def inc(x: int) -> int:
    return x + 1


def odd(x: int) -> bool:
    return x & 1 == 1


def triple(x: int) -> int:
    return x * 3


def add(acc: int, x: int) -> int:
    return acc + x


# -- five-stage chain ------------------------------------------------------------------


async def handwritten_chain(n: int) -> int:
    async def source() -> AsyncGenerator[int, None]:
        for i in range(n):
            yield i

    async def amap(src: AsyncIterable[int], f: Callable[[int], int]) -> AsyncGenerator[int, None]:
        async for x in src:
            yield f(x)

    async def afilter(
        src: AsyncIterable[int], p: Callable[[int], bool]
    ) -> AsyncGenerator[int, None]:
        async for x in src:
            if p(x):
                yield x

    async def adedupe(src: AsyncIterable[int]) -> AsyncGenerator[int, None]:
        seen: set[int] = set()
        async for x in src:
            if x not in seen:
                seen.add(x)
                yield x

    async def areduce(
        src: AsyncIterable[int], f: Callable[[int, int], int], acc: int
    ) -> AsyncGenerator[int, None]:
        async for x in src:
            acc = f(acc, x)
            yield acc

    last = 0
    async for value in areduce(adedupe(amap(afilter(amap(source(), inc), odd), triple)), add, 0):
        last = value
    return last


async def pullpush_chain(n: int) -> int:
    chain = PullReduceObj(
        PullDedupeObj(
            PullMapObj(PullFilterObj(PullMapObj(SourceFromIterable(range(n)), inc), odd), triple)
        ),
        add,
        0,
    )
    last = 0
    async for value in chain:
        last = value
    return last


def fluent_chain(n: int) -> PullChain[int]:
    return (
        PullChain.from_source(SourceFromIterable(range(n)))
        .map(inc)
        .filter(odd)
        .map(triple)
        .dedupe()
        .reduce(add, 0)
    )


async def pull_chain(n: int) -> int:
    last = 0
    async for value in fluent_chain(n):
        last = value
    return last


async def compiled_pull_chain(n: int) -> int:
    last = 0
    async for value in fluent_chain(n).compile():
        last = value
    return last


# -- race over 4 sources ------------------------------------------------------------------

SOURCES = 4


async def numbers(count: int, every: int) -> AsyncGenerator[int, None]:
    for i in range(count):
        if every and i % every == 0:
            await asyncio.sleep(0)
        yield i


def race_case(every: int) -> Case:
    async def case(n: int) -> int:
        sources = [numbers(n // SOURCES, every) for _ in range(SOURCES)]
        total = 0
        async for _ in PullRaceObj(sources):
            total += 1
        return total

    return case


def queue_merge_case(every: int) -> Case:
    async def case(n: int) -> int:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        async def pump(source: AsyncIterable[int]) -> None:
            async for item in source:
                await queue.put(item)
            await queue.put(done)

        pumps = [asyncio.create_task(pump(numbers(n // SOURCES, every))) for _ in range(SOURCES)]
        total = finished = 0
        while finished < SOURCES:
            item = await queue.get()
            if item is done:
                finished += 1
            else:
                total += 1
        await asyncio.gather(*pumps)
        return total

    return case


def main() -> None:
    args = arguments(__doc__ or "", 1_000_000)
    cases: dict[str, tuple[str, Case]] = {
        "hand-written async generators (5 stages)": ("chain", handwritten_chain),
        "pullpush pull chain (5 stages)": ("chain", pullpush_chain),
        "PullChain, fluent (5 stages)": ("chain", pull_chain),
        "CompiledPullChain (5 stages fused)": ("chain", compiled_pull_chain),
        "asyncio.Queue merge, 4 sources, I/O every 8": ("race-io", queue_merge_case(8)),
        "PullRaceObj, 4 sources, I/O every 8": ("race-io", race_case(8)),
        "asyncio.Queue merge, 4 sources, no I/O": ("race-cpu", queue_merge_case(0)),
        "PullRaceObj, 4 sources, no I/O": ("race-cpu", race_case(0)),
    }
    baselines = {
        "chain": "hand-written async generators (5 stages)",
        "race-io": "asyncio.Queue merge, 4 sources, I/O every 8",
        "race-cpu": "asyncio.Queue merge, 4 sources, no I/O",
    }
    try:
        from push_cases import BASELINE as PUSH_BASELINE
        from push_cases import CASES as PUSH_CASES
    except ImportError:
        PUSH_CASES, PUSH_BASELINE = {}, None
    for name, case in PUSH_CASES.items():
        cases[name] = ("push", case)
    if PUSH_BASELINE:
        baselines["push"] = PUSH_BASELINE
    run_benchmark(__file__, cases, baselines, args, "pull/push operator overhead", "operators")


if __name__ == "__main__":
    main()
