"""RayExecutor against plain Ray on a local Ray with 2 CPUs, measured in the same run.

    python bench/ray_executor.py [--repeats 5] [--warmup 1] [--cpus 2]
    ./scripts/bench ray_executor [--repeats 5]   (needs the ray extra: pip install -e '.[ray]')

(Not ``bench/ray.py``: run from this folder, that name would shadow the ``ray`` package.)

Three workloads, each a pullpush case and its plain-Ray twin:

* ``trivial``: 2,000 tasks that return ``None``. pullpush: a
  :class:`HierarchicalTaskPoolRunner` over a started :class:`RayExecutor` (the runner
  consumed to its end); plain Ray: ``ray.get([f.remote() for _ in range(2000)])``.
* ``stream``:  one task yielding 10,000 small ints. pullpush: ``executor.stream(gen)``
  (the values travel in batches); plain Ray: a streaming-generator task
  (``num_returns="streaming"``) read with ``ray.get`` per value, one Ray object each,
  which is how RayExecutor streamed before it batched (about 1,850 values/s then).
* ``cpu``:     64 tasks of about 50 ms of pure-Python CPU each. pullpush: the runner
  as for ``trivial``; plain Ray: ``ray.get([f.remote() ...])``.

The pullpush side runs with the defaults: plain runners are calls to the executor's
actors (one per CPU), the runner queueing its next task in an actor behind a running
one (the capacity hand-off: a task holds capacity only while it runs). (The opt-in
``prefetch="auto"`` is no longer measured: with the hand-off it gains nothing.)

Functions are defined in this script (so both sides ship them by value, as for a
user's ``__main__``). Ray and the executor are started before the clock; every round
runs every case once, the order turning each round; a first ``--warmup`` round is not
counted. The table shows medians, the paired ratio (the median over rounds of plain
Ray's time / pullpush's time within a round: above 1.0, pullpush is faster) and the
spread of each side, (max - min) / median.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Generator
from typing import Any

from _harness import machine, paired_ratio, write_json
from _workloads import calibrate

from pullpush import CapacitySource, HierarchicalTaskPoolRunner, RayExecutor

TRIVIAL, STREAM, CPU_TASKS = 2000, 10_000, 64


def nothing() -> None:
    return None


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def counts() -> Generator[int, None, None]:
    for value in range(STREAM):  # noqa: UP028 - Ray cannot stream a ``yield from`` range
        yield value


def spread(seconds: list[float]) -> float:
    """(max - min) / median over the rounds."""
    return (max(seconds) - min(seconds)) / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="counted rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--workloads", default="trivial,stream,cpu", help="which, comma-separated")
    args = parser.parse_args()

    import functools

    import ray

    per_50ms = calibrate(0.05)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"RayExecutor vs plain Ray {ray.__version__}, local Ray with {args.cpus} CPUs")
    print(f"machine: {machine()}")
    plain_nothing = ray.remote(num_cpus=1, max_retries=0)(nothing)
    plain_spin = ray.remote(num_cpus=1, max_retries=0)(spin)
    plain_counts = ray.remote(num_cpus=1, max_retries=0, num_returns="streaming")(counts)
    spin_50ms = functools.partial(spin, per_50ms)

    async def pullpush_tasks(executor: RayExecutor, runner: Callable[[], Any], n: int) -> int:
        tasks = HierarchicalTaskPoolRunner(
            "bench", [runner] * n, CapacitySource(n), executor=executor
        )
        done = 0
        async for _ in tasks.run_tasks():
            done += 1
        assert done == n, done
        return done

    async def pullpush_stream(executor: RayExecutor) -> int:
        seen = 0
        async for _ in executor.stream(counts):
            seen += 1
        assert seen == STREAM + 1, seen  # the values and the FINAL
        return seen

    def plain_stream() -> int:
        seen = 0
        for ref in plain_counts.remote():
            ray.get(ref)
            seen += 1
        assert seen == STREAM, seen
        return seen

    async def rounds() -> dict[str, list[float]]:
        cases: dict[str, Callable[[RayExecutor], Any]] = {
            "trivial/pullpush": lambda ex: pullpush_tasks(ex, nothing, TRIVIAL),
            "trivial/ray": lambda ex: ray.get([plain_nothing.remote() for _ in range(TRIVIAL)]),
            "stream/pullpush": pullpush_stream,
            "stream/ray": lambda ex: plain_stream(),
            "cpu/pullpush": lambda ex: pullpush_tasks(ex, spin_50ms, CPU_TASKS),
            "cpu/ray": lambda ex: ray.get([plain_spin.remote(per_50ms) for _ in range(CPU_TASKS)]),
        }
        chosen = args.workloads.split(",")
        cases = {name: case for name, case in cases.items() if name.split("/")[0] in chosen}
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        order = list(cases.items())
        async with RayExecutor() as executor:
            for number in range(args.warmup + args.repeats):
                for name, case in order if number % 2 == 0 else reversed(order):
                    gc.collect()
                    start = time.perf_counter()
                    result = case(executor)
                    if asyncio.iscoroutine(result):
                        await result
                    if number >= args.warmup:
                        seconds[name].append(time.perf_counter() - start)
        return seconds

    try:
        seconds = asyncio.run(rounds())
    finally:
        ray.shutdown()
    per_item = {"trivial": TRIVIAL, "stream": STREAM, "cpu": CPU_TASKS}
    print(f"median of {args.repeats} rounds (alternating order, {args.warmup} warm-up)")
    print(
        "| workload | pullpush (s) | plain Ray (s) | pullpush items/s "
        "| plain Ray / pullpush | spread pullpush, Ray |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in seconds:
        workload, side = name.split("/")
        if side == "ray":
            continue
        n = per_item[workload]
        ours, theirs = seconds[name], seconds[f"{workload}/ray"]
        label = f"{workload} ({n:,})"
        print(
            f"| {label} | {statistics.median(ours):.3f} "
            f"| {statistics.median(theirs):.3f} | {n / statistics.median(ours):,.0f} "
            f"| {paired_ratio(theirs, ours):.2f}x | {spread(ours):.0%}, {spread(theirs):.0%} |"
        )
    write_json("ray", {"machine": machine(), "seconds": seconds})


if __name__ == "__main__":
    main()
