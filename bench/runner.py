"""Per-task overhead of the inline runner against the same work hand-written with
``asyncio.Semaphore`` and ``asyncio.TaskGroup``.

    python bench/runner.py [--n 100000] [--repeats 5] [--loop asyncio|uvloop] [--instructions]

Each task is a coroutine returning its argument; capacity 64. Both sides collect
every result; all cases run in the same process, interleaved, median of ``--repeats``.
"""

from __future__ import annotations

import asyncio
import functools

from _harness import Case, arguments, run_benchmark

from pullpush import CapacitySource, EnvelopeType, HierarchicalTaskPoolRunner

CAPACITY = 64


async def identity(x: int) -> int:
    return x


async def handwritten(n: int) -> int:
    semaphore = asyncio.Semaphore(CAPACITY)
    results: list[int] = []

    async def one(i: int) -> None:
        async with semaphore:
            results.append(await identity(i))

    async with asyncio.TaskGroup() as group:
        for i in range(n):
            group.create_task(one(i))
    return len(results)


async def handwritten_bounded(n: int) -> int:
    """The same, creating a task only once the semaphore admits it (bounded memory)."""
    semaphore = asyncio.Semaphore(CAPACITY)
    results: list[int] = []

    async def one(i: int) -> None:
        try:
            results.append(await identity(i))
        finally:
            semaphore.release()

    async with asyncio.TaskGroup() as group:
        for i in range(n):
            await semaphore.acquire()
            group.create_task(one(i))
    return len(results)


async def pullpush_runner(n: int) -> int:
    tasks = (functools.partial(identity, i) for i in range(n))
    runner = HierarchicalTaskPoolRunner("bench", tasks, CapacitySource(CAPACITY))
    results = []
    async for envelope in runner.run_tasks():
        if envelope.type is EnvelopeType.FINAL:
            results.append(envelope.value)
    return len(results)


def main() -> None:
    args = arguments(__doc__ or "", 100_000)
    cases: dict[str, tuple[str, Case]] = {
        "Semaphore + TaskGroup (all tasks created up front)": ("inline", handwritten),
        "Semaphore + TaskGroup (task created when admitted)": ("inline", handwritten_bounded),
        "HierarchicalTaskPoolRunner, inline": ("inline", pullpush_runner),
    }
    # The stricter baseline: the hand-written version that creates a task only once it
    # is admitted (as the runner does) is about twice as fast as the naive one.
    baselines = {"inline": "Semaphore + TaskGroup (task created when admitted)"}
    title = f"inline runner overhead per task, capacity {CAPACITY}"
    run_benchmark(__file__, cases, baselines, args, title, "runner")


if __name__ == "__main__":
    main()
