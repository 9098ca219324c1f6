"""Process 100 documents, at most 10 at a time (seed guide, section 3.1).

Each task runner is a function that starts the work only when the runner calls it,
once it holds a unit of capacity; its progress streams out as INTERMEDIATE envelopes
and its result as the FINAL one.

Run: ``python examples/capacity_limited.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from pullpush import (
    BufferMode,
    CapacitySource,
    EnvelopeType,
    Final,
    HierarchicalTaskPoolRunner,
    SourceBufferObj,
)

running = 0
peak = 0


async def process_document(doc: dict[str, Any]) -> AsyncIterator[Any]:
    """A document's processing: progress updates, then its result as ``Final``."""
    global running, peak
    running += 1
    peak = max(peak, running)
    try:
        yield {"doc": doc["id"], "status": "parsing"}
        await asyncio.sleep(0.01)
        yield {"doc": doc["id"], "status": "summarising"}
        await asyncio.sleep(0.01)
        yield Final({"doc": doc["id"], "words": len(doc["text"].split())})
    finally:
        running -= 1


async def main() -> None:
    documents = [{"id": i, "text": "lorem ipsum " * i} for i in range(100)]

    capacity = CapacitySource(10)  # at most 10 documents at a time

    def task_runner(doc: dict[str, Any]) -> Callable[[], Any]:
        async def start() -> AsyncIterator[Any]:
            return process_document(doc)  # started only when the runner calls start()

        return start

    task_source = SourceBufferObj([task_runner(d) for d in documents], True, BufferMode.FIFO)
    runner = HierarchicalTaskPoolRunner("document-processing-pool", task_source, capacity)

    results = []
    async for envelope in runner.run_tasks():
        if envelope.type == "INTERMEDIATE":
            progress = envelope.value  # the document's own progress update
            assert progress["status"] in ("parsing", "summarising")
        elif envelope.type == "FINAL":
            results.append(envelope.value)
        elif envelope.type is EnvelopeType.ERROR:
            print(f"task {envelope.task_id} failed: {envelope.error!r}")

    print(f"{len(results)} documents processed, at most {peak} at a time")
    assert sorted(r["doc"] for r in results) == list(range(100))
    assert peak == 10
    assert capacity.available == 10  # every unit came back


if __name__ == "__main__":
    asyncio.run(main())
