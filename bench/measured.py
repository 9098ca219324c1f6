"""Capacity that follows measured memory, against a plain count limit.

    python bench/measured.py [--task-mib 300] [--headroom-mib 1200] [--tasks 24] [--hold 0.5]

Memory-hungry tasks run in worker processes (each allocates ``--task-mib`` MiB,
touches every page and holds it for ``--hold`` seconds). The reserve is set so that
only ``--headroom-mib`` MiB are free above it when the run starts.

* **measured**: the runner's ``CapacitySource(8)`` sits under a
  ``MemoryCapacitySource(reserve_mb)``; every unit costs ``task_mib`` plus 10 % (the
  estimate covers Python's own overhead) there, and the limit follows
  ``psutil.virtual_memory().available`` (sampled every 0.1 s).
* **count**: the same ``CapacitySource(8)`` alone.

A sampler records available memory every 20 ms in both runs. The script prints each
run's minimum and whether it stayed above the reserve (each run's reserve is set
from the memory available when it starts), writes JSON, and plots both runs' headroom
above their reserve to ``bench/results/measured.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from typing import Any

import psutil
from _harness import RESULTS_DIR, machine, write_json

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    MemoryCapacitySource,
    ProcessExecutor,
)

MIB = 1024 * 1024


async def hold_memory(mib: int, seconds: float) -> int:
    """Allocate ``mib`` MiB, touch every page, hold it for ``seconds``."""
    block = bytearray(mib * MIB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    await asyncio.sleep(seconds)
    return len(block) // MIB


def available_mib() -> float:
    return psutil.virtual_memory().available / MIB


async def sample(samples: list[tuple[float, float]], start: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter() - start, available_mib()))
        try:
            await asyncio.wait_for(stop.wait(), 0.02)
        except asyncio.TimeoutError:
            pass


async def run(
    kind: str, args: argparse.Namespace, executor: ProcessExecutor, reserve_mib: float
) -> dict[str, Any]:
    memory: MemoryCapacitySource | None = None
    if kind == "measured":
        memory = MemoryCapacitySource(reserve_mb=reserve_mib, interval=0.1)
        memory.start()
        estimate = args.task_mib * 1.1
        pool = CapacitySource(8, parent=memory, cost={"memory_mb": estimate})
    else:
        pool = CapacitySource(8)
    tasks = [functools.partial(hold_memory, args.task_mib, args.hold)] * args.tasks
    runner = HierarchicalTaskPoolRunner(kind, tasks, pool, executor=executor)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    start = time.perf_counter()
    sampler = asyncio.create_task(sample(samples, start, stop))
    done = 0
    try:
        async for envelope in runner.run_tasks():
            done += envelope.type is EnvelopeType.FINAL
    finally:
        stop.set()
        await sampler
        if memory is not None:
            await memory.aclose()
    lowest = min(value for _, value in samples)
    return {
        "kind": kind,
        "completed": done,
        "seconds": time.perf_counter() - start,
        "min_available_mib": lowest,
        "stayed_above_reserve": lowest >= reserve_mib,
        "reserve_mib": reserve_mib,
        "samples": samples,
    }


def plot(results: list[dict[str, Any]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    for result in results:
        times = [t for t, _ in result["samples"]]
        values = [v - result["reserve_mib"] for _, v in result["samples"]]
        label = {
            "measured": "MemoryCapacitySource parent (measured)",
            "count": "CapacitySource(8) alone (count)",
        }[result["kind"]]
        axis.plot(times, values, label=label)
    axis.axhline(0, color="red", linestyle="--", label="reserve")
    axis.set_xlabel("seconds")
    axis.set_ylabel("available memory above the reserve (MiB)")
    axis.set_title("Memory-hungry tasks: measured capacity vs a count limit")
    axis.legend(loc="upper right", framealpha=0.9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    executor = ProcessExecutor(args.workers, tasks_per_worker=args.tasks_per_worker, prefetch=0)
    async with executor:
        await executor.run(hold_memory, 1, 0)
        results = []
        reserves = []
        for kind in ("measured", "count"):
            await asyncio.sleep(1.0)  # let memory settle between the runs
            reserve = available_mib() - args.headroom_mib
            reserves.append(reserve)
            results.append(await run(kind, args, executor, reserve))
    return {"results": results, "reserves": reserves}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task-mib", type=int, default=300)
    parser.add_argument("--headroom-mib", type=float, default=1200)
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--hold", type=float, default=0.5, help="seconds each task holds")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks-per-worker", type=int, default=2)
    args = parser.parse_args()
    outcome = asyncio.run(main_async(args))
    print(f"machine: {machine()}")
    print(
        f"{args.tasks} tasks of {args.task_mib} MiB, {args.headroom_mib:.0f} MiB above the "
        "reserve at the start of each run, concurrency limit 8"
    )
    print("| run | completed | seconds | min available (MiB) | reserve (MiB) | above reserve |")
    print("|---|---:|---:|---:|---:|---|")
    for result, reserve in zip(outcome["results"], outcome["reserves"], strict=True):
        print(
            f"| {result['kind']} | {result['completed']} | {result['seconds']:.1f} | "
            f"{result['min_available_mib']:.0f} | {reserve:.0f} | "
            f"{'yes' if result['stayed_above_reserve'] else 'NO'} |"
        )
    RESULTS_DIR.mkdir(exist_ok=True)
    png = RESULTS_DIR / "measured.png"
    plot(outcome["results"], png)
    write_json("measured", {"machine": machine(), "args": vars(args), **outcome})
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
