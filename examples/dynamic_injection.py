"""Dynamic task injection: a producer pushes task runners into a ``PushPullBufferObj``
while the runner pulls them (seed guide, section 3.3.2).

When the runner runs out of work it waits for more; closing the sink ends the run.

Run: ``python examples/dynamic_injection.py``
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

from pullpush import CapacitySource, Final, HierarchicalTaskPoolRunner, PushPullBufferObj


async def sub_task(task_id: int) -> AsyncIterator[Any]:
    yield f"subtask {task_id} running"
    await asyncio.sleep(0.01)
    yield Final(task_id * task_id)


async def main() -> None:
    capacity_source = CapacitySource(5)

    # A dynamic work queue: push task runners into .sink, the runner pulls from .source.
    task_queue: PushPullBufferObj[Callable[[], Any]] = PushPullBufferObj()
    runner = HierarchicalTaskPoolRunner("dynamic-task-pool", task_queue.source, capacity_source)

    async def producer() -> None:
        for i in range(10):  # tasks discovered over time
            await task_queue.sink.asend(functools.partial(sub_task, i))
            await asyncio.sleep(0.02)
        # IMPORTANT: close the sink to say no more tasks are coming; the runner and
        # the consumer loop then end once the queued tasks are done.
        await task_queue.sink.aclose()

    async def consumer() -> list[int]:
        results = []
        async for envelope in runner.run_tasks():
            if envelope.type == "FINAL":
                results.append(envelope.value)
            else:
                print(envelope.value)
        return results

    _, final_results = await asyncio.gather(producer(), consumer())

    print(f"results: {sorted(final_results)}")
    assert sorted(final_results) == [i * i for i in range(10)]


if __name__ == "__main__":
    asyncio.run(main())
