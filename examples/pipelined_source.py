"""Pipelined parallelism: an async-generator task source chunks a document while
earlier chunks are being analysed (seed guide, section 3.3.1).

The runner pulls the next task only when it has room for it, so chunking and analysis
overlap instead of running one after the other.

Run: ``python examples/pipelined_source.py``
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from pullpush import CapacitySource, HierarchicalTaskPoolRunner

DOCUMENT = " ".join(f"word{i % 37}" for i in range(20_000))
events: list[str] = []


async def read_document(document_id: str) -> AsyncIterator[str]:
    """Stand-in for a document stream: chunks of 1,000 words, one at a time."""
    words = DOCUMENT.split()
    for start in range(0, len(words), 1_000):
        await asyncio.sleep(0.002)  # reading takes time
        yield " ".join(words[start : start + 1_000])


async def analyse_chunk(name: str, chunk: str) -> AsyncIterator[Any]:
    events.append(f"analyse {name}")
    yield {"chunk": name, "status": "started"}
    await asyncio.sleep(0.01)
    yield {"chunk": name, "status": "done", "words": Counter(chunk.split())}


async def chunker_and_task_source(document_id: str) -> AsyncIterator[Callable[[], Any]]:
    """Discover work (chunks) and yield functions that will do it."""
    chunk_index = 0
    async for chunk in read_document(document_id):
        name = f"chunk_{document_id}_{chunk_index}"
        chunk_index += 1
        events.append(f"chunked {name}")
        # Yield a FUNCTION: the runner calls it once it holds capacity for it.
        yield functools.partial(analyse_chunk, name, chunk)


async def main() -> None:
    capacity_source = CapacitySource(5)  # analyse 5 chunks at a time
    runner = HierarchicalTaskPoolRunner(
        "chunk-analysis-pool", chunker_and_task_source("doc-1"), capacity_source
    )
    totals: Counter[str] = Counter()
    async for envelope in runner.run_tasks():
        update = envelope.value
        if envelope.type == "INTERMEDIATE" and update["status"] == "done":
            totals.update(update["words"])

    assert totals == Counter(DOCUMENT.split())
    # Pipelined: chunk 0 was analysed before the last chunk was even read.
    assert events.index("analyse chunk_doc-1_0") < events.index("chunked chunk_doc-1_10")
    print(f"{len(events) // 2} chunks, {sum(totals.values())} words, {len(totals)} distinct")


if __name__ == "__main__":
    asyncio.run(main())
