"""Decoupled consumption: pump ``run_tasks()`` into a ``PushPullBufferObj`` from a
detached task, so the pool finishes at full speed while a slow consumer reads at its
own pace (seed guide, appendix A).

The buffer is unbounded: it holds every envelope the consumer has not read yet. Use
this only when finishing all tasks quickly matters more than memory.

Run: ``python examples/decoupled_consumer.py``
"""

from __future__ import annotations

import asyncio

from pullpush import (
    CapacitySource,
    HierarchicalTaskPoolRunner,
    PushPullBufferObj,
    TaskProgressEnvelope,
)


async def work(i: int) -> int:
    await asyncio.sleep(0.005)
    return i * 10


async def main() -> None:
    tasks = [lambda i=i: work(i) for i in range(50)]
    runner = HierarchicalTaskPoolRunner("my-pool", tasks, CapacitySource(10))

    # 1. A buffer to hold the envelopes.
    results_buffer: PushPullBufferObj[TaskProgressEnvelope] = PushPullBufferObj()

    # 2. Run the pool in a detached task that fills the buffer at full speed.
    async def pump() -> None:
        try:
            async for envelope in runner.run_tasks(stop_on_error=True):
                await results_buffer.sink.asend(envelope)
            await results_buffer.sink.aclose()  # production is complete
        except Exception as error:
            # The consumer's loop raises this once it has read what came before.
            await results_buffer.sink.athrow(error)

    pumping = asyncio.create_task(pump())

    # 3. Consume at our own pace; the runner keeps working in the background.
    final_results = []
    async for envelope in results_buffer.source:
        if envelope.type == "FINAL":
            final_results.append(envelope.value)
        if len(final_results) == 1 and not pumping.done():
            await pumping  # the pool finishes without waiting for this consumer
            print(f"pool finished; {len(results_buffer)} envelopes wait in the buffer")
        await asyncio.sleep(0.001)  # a slow consumer

    assert sorted(final_results) == [i * 10 for i in range(50)]
    print(f"{len(final_results)} results consumed")


if __name__ == "__main__":
    asyncio.run(main())
