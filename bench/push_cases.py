"""Push chain overhead: uncompiled vs compiled vs hand-written async functions.

Each case pushes ``n`` ints through the same five stages into a sink that keeps the
last value::

    map(x + 1) -> filter(even) -> map(x * 3) -> reduce(sum) -> post_callback(count)

and returns ``(count, last value)`` so the cases can be checked against each other.

Run::

    python bench/push_cases.py                 # n = 1,000,000, median of 5 runs
    python bench/push_cases.py --n 100000 --repeat 3 --loop uvloop

It prints a markdown table (median seconds, ns per item, speed relative to the
uncompiled chain and to the hand-written baseline) and writes the numbers as JSON
to ``bench/results/push_cases.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from pullpush import PushChainBuilder, SinkObj


class LastValueSink(SinkObj[Any]):
    """Keep the last value received."""

    def __init__(self) -> None:
        super().__init__()
        self.last: Any = None

    async def next_impl(self, value: Any) -> None:
        self.last = value


def _builder(counter: list[int]) -> PushChainBuilder[Any, Any]:
    def count(value: int) -> None:
        counter[0] += 1

    return (
        PushChainBuilder.start()
        .map(lambda x: x + 1)
        .filter(lambda x: x % 2 == 0)
        .map(lambda x: x * 3)
        .reduce(lambda acc, x: acc + x, 0)
        .post_callback(count)
    )


async def _push_chain(n: int, compiled: bool) -> object:
    counter = [0]
    sink = LastValueSink()
    builder = _builder(counter)
    chain = (builder.compile() if compiled else builder).into(sink)
    send = chain.asend
    for i in range(n):
        await send(i)
    await chain.aclose()
    return counter[0], sink.last


async def push_chain_uncompiled(n: int) -> object:
    return await _push_chain(n, compiled=False)


async def push_chain_compiled(n: int) -> object:
    return await _push_chain(n, compiled=True)


async def push_hand_written(n: int) -> object:
    counter = [0]
    last: list[Any] = [None]
    acc = [0]

    async def sink(value: int) -> bool:
        last[0] = value
        return True

    async def post_callback(value: int) -> bool:
        accepting = await sink(value)
        counter[0] += 1
        return accepting

    async def reduce(value: int) -> bool:
        acc[0] = acc[0] + value
        return await post_callback(acc[0])

    async def map2(value: int) -> bool:
        return await reduce(value * 3)

    async def filter_even(value: int) -> bool:
        if value % 2 == 0:
            return await map2(value)
        return True

    async def map1(value: int) -> bool:
        return await filter_even(value + 1)

    for i in range(n):
        await map1(i)
    return counter[0], last[0]


CASES: dict[str, Callable[[int], Awaitable[object]]] = {
    "push chain (uncompiled)": push_chain_uncompiled,
    "push chain (compiled)": push_chain_compiled,
    "push hand-written": push_hand_written,
}


def _time_case(case: Callable[[int], Awaitable[object]], n: int, repeat: int, loop: str) -> Any:
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    times = []
    result: object = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = runner(case(n))  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="items per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "push_cases.json"
    )
    args = parser.parse_args(argv)

    medians: dict[str, float] = {}
    results: dict[str, object] = {}
    for name, case in CASES.items():
        medians[name], results[name] = _time_case(case, args.n, args.repeat, args.loop)
    if len(set(map(repr, results.values()))) != 1:
        raise SystemExit(f"cases disagree: {results}")

    base = medians["push chain (uncompiled)"]
    hand = medians["push hand-written"]
    print(
        f"push chain overhead: n={args.n:,}, median of {args.repeat}, {args.loop} loop, "
        f"Python {platform.python_version()}"
    )
    print()
    print("| case | median s | ns/item | vs uncompiled | vs hand-written |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in medians.items():
        print(
            f"| {name} | {seconds:.3f} | {seconds / args.n * 1e9:.0f} | "
            f"{base / seconds:.2f}x | {hand / seconds:.2f}x |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "n": args.n,
                "repeat": args.repeat,
                "loop": args.loop,
                "python": sys.version,
                "median_seconds": medians,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
