"""Process mode: CPU-bound task runners in worker processes, each with its own uvloop,
with the same runner API and the same envelopes as inline mode.

Task functions travel to the workers by cloudpickle: module-level functions (as here)
or closures both work. ``functools.partial(f, data)`` sends ``f`` to each worker once
and only ``data`` per task. A sync generator's yields stream back as INTERMEDIATE
envelopes while it runs.

Run: ``python examples/process_mode.py``
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Generator

from pullpush import CapacitySource, ExecutorSpec, HierarchicalTaskPoolRunner, ProcessExecutor


def checksum(block: bytes, rounds: int) -> Generator[str, None, str]:
    """CPU-bound work that reports its progress."""
    digest = block
    for i in range(rounds):
        digest = hashlib.sha256(digest * 64).digest()
        if i % 1000 == 999:
            yield f"{i + 1} rounds"
    return digest.hex()


async def run(executor: ExecutorSpec) -> dict[int, str]:
    blocks = [bytes([i]) * 1024 for i in range(8)]
    tasks = [functools.partial(checksum, block, 3000) for block in blocks]
    runner = HierarchicalTaskPoolRunner("checksums", tasks, CapacitySource(4), executor=executor)
    results: dict[int, str] = {}
    progress = 0
    async for envelope in runner.run_tasks(stop_on_error=True):
        if envelope.type == "INTERMEDIATE":
            progress += 1
        elif envelope.type == "FINAL":
            results[envelope.task_id] = envelope.value
    assert progress == 8 * 3  # every yield arrived, from every worker
    return results


async def main() -> None:
    in_processes = await run("process")
    inline = await run("inline")
    assert in_processes == inline  # same answers, computed in worker processes

    # One pool shared by several runs: started once, closed once.
    async with ProcessExecutor(max_workers=2) as pool:
        first = await run(pool)
        second = await run(pool)
    assert first == second == inline
    print(f"{len(in_processes)} checksums, identical inline and in processes")


if __name__ == "__main__":
    asyncio.run(main())
