"""A million tiny items (x -> x * x) through a process pool, side by side.

    python bench/map.py [--n 1000000] [--workers 2] [--repeats 5] [--chunksizes ...]

Every case runs in this one process, on pools of ``--workers`` forkserver workers,
interleaved round by round with the order turning each round (a drift of the machine
favours no case). Two groups:

* **warm** (the pool is started before the clock): ``pullpush.map`` over a started
  :class:`ProcessExecutor` (adaptive batches), its results collected into a list by
  ``await`` and by ``async for``, and ``await`` over ``list(range(n))`` instead of the
  range (a range travels to the workers as ranges; a list's items are pickled);
  ``multiprocessing.Pool.map`` at each ``--chunksizes`` value (the best of them is the
  baseline, chosen per round, i.e. with hindsight);
  ``ProcessPoolExecutor.map`` at the chunksize that was best for ``Pool.map`` in the
  first round.
* **cold** (creating and closing the pool included): ``pullpush.map_sync`` (builds its
  executor, runs its own loop in a thread) against ``with Pool(): pool.map(...)`` at
  that same chunksize.

Ratios are paired: the median over rounds of (case / baseline) within each round.
Every case's result is checked against ``[x * x for x in range(n)]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import gc
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from _harness import machine, paired_ratio, write_json

import pullpush
from pullpush import ProcessExecutor

START_METHOD = "forkserver"


def square(x: int) -> int:
    return x * x


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="items per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (median)")
    parser.add_argument(
        "--chunksizes",
        default="2000,10000,50000,125000",
        help="Pool.map chunksizes tried (125000 is Pool.map's own default for 1e6 items "
        "and 2 workers: n / (4 * workers))",
    )
    args = parser.parse_args()
    chunksizes = [int(c) for c in args.chunksizes.split(",")]
    n, workers = args.n, args.workers
    expected = [x * x for x in range(n)]
    context = multiprocessing.get_context(START_METHOD)

    loop = asyncio.new_event_loop()
    # Started first, so the forkserver preloads pullpush (see ProcessExecutor's docs).
    executor = ProcessExecutor(workers, start_method=START_METHOD)
    loop.run_until_complete(executor.start())
    pool = context.Pool(workers)
    ppe = cf.ProcessPoolExecutor(workers, mp_context=context)

    async def pullpush_map() -> list[int]:
        return await pullpush.map(square, range(n), executor=executor)

    listed = list(range(n))  # built before the clock

    async def pullpush_map_list() -> list[int]:
        return await pullpush.map(square, listed, executor=executor)

    async def pullpush_map_iterated() -> list[int]:
        return [r async for r in pullpush.map(square, range(n), executor=executor)]

    def warm_up() -> None:
        loop.run_until_complete(pullpush_map())
        pool.map(square, range(n), chunksize=chunksizes[-1])
        list(ppe.map(square, range(1000), chunksize=100))

    warm_up()
    warm: dict[str, Callable[[], Any]] = {
        "await pullpush.map (warm)": lambda: loop.run_until_complete(pullpush_map()),
        "async for in pullpush.map (warm)": lambda: loop.run_until_complete(
            pullpush_map_iterated()
        ),
        "await pullpush.map over a list (warm)": lambda: loop.run_until_complete(
            pullpush_map_list()
        ),
    }
    for size in chunksizes:
        warm[f"Pool.map chunksize={size}"] = functools_partial(pool.map, square, n, size)
    times: dict[str, list[float]] = {name: [] for name in warm}
    best_pool: list[float] = []
    ppe_times: list[float] = []
    cold_pullpush: list[float] = []
    cold_pool: list[float] = []
    ppe_chunksize: int | None = None

    def timed(case: Callable[[], Any]) -> float:
        gc.collect()
        start = time.perf_counter()
        result = case()
        took = time.perf_counter() - start
        if list(result) != expected:
            raise AssertionError("a case computed something else")
        return took

    try:
        for round_number in range(args.repeats):
            order = list(warm.items())
            if round_number % 2:
                order.reverse()
            for name, case in order:
                times[name].append(timed(case))
            pool_names = [f"Pool.map chunksize={size}" for size in chunksizes]
            best_name = min(pool_names, key=lambda name: times[name][-1])
            best_pool.append(times[best_name][-1])
            if ppe_chunksize is None:
                ppe_chunksize = int(best_name.rsplit("=", 1)[1])
            chunk = ppe_chunksize

            def run_ppe(chunk: int = chunk) -> list[int]:
                return list(ppe.map(square, range(n), chunksize=chunk))

            def cold_pullpush_case() -> list[int]:
                return list(pullpush.map_sync(square, range(n), workers=workers))

            def cold_pool_case(chunk: int = chunk) -> list[int]:
                with context.Pool(workers) as fresh:
                    return fresh.map(square, range(n), chunksize=chunk)

            pairs = [(ppe_times, run_ppe), (cold_pullpush, cold_pullpush_case)]
            pairs.append((cold_pool, cold_pool_case))
            if round_number % 2:
                pairs.reverse()
            for record, case in pairs:
                record.append(timed(case))
    finally:
        pool.terminate()
        pool.join()
        ppe.shutdown()
        loop.run_until_complete(executor.aclose())
        loop.close()

    print(f"pullpush.map against Pool.map and ProcessPoolExecutor.map, n={n:,} x -> x * x")
    print(f"machine: {machine()}")
    print(f"workers={workers}, {START_METHOD}, median of {args.repeats} rounds (order turns)")
    print("| case | median (s) | items/s | vs baseline (paired) |")
    print("|---|---:|---:|---:|")

    def row(name: str, seconds: list[float], base: list[float] | None) -> None:
        median = statistics.median(seconds)
        spread = (max(seconds) - min(seconds)) / median
        ratio = f"{paired_ratio(seconds, base):.2f}x" if base is not None else "baseline"
        print(f"| {name} | {median:.3f} (spread {spread:.0%}) | {n / median:,.0f} | {ratio} |")

    row("Pool.map, best chunksize each round (warm)", best_pool, None)
    for name, seconds in times.items():
        row(name, seconds, best_pool)
    row(f"ProcessPoolExecutor.map chunksize={ppe_chunksize} (warm)", ppe_times, best_pool)
    row(f"with Pool(): map chunksize={ppe_chunksize} (cold)", cold_pool, None)
    row("pullpush.map_sync (cold: builds its executor)", cold_pullpush, cold_pool)
    write_json(
        "map",
        {
            "machine": machine(),
            "args": vars(args),
            "warm": times,
            "best_pool": best_pool,
            "ppe": ppe_times,
            "ppe_chunksize": ppe_chunksize,
            "cold_pullpush_map_sync": cold_pullpush,
            "cold_pool": cold_pool,
        },
    )


def functools_partial(
    pool_map: Callable[..., list[int]], fn: Callable[[int], int], n: int, size: int
) -> Callable[[], list[int]]:
    def case() -> list[int]:
        return pool_map(fn, range(n), chunksize=size)

    return case


if __name__ == "__main__":
    main()
