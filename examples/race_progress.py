"""Race several progress streams into one (seed guide, pattern 1).

Three independent analysis steps each stream progress; ``AsyncIteratorCombiner``
merges them and ``race_generator()`` yields whichever update is ready first.

Run: ``python examples/race_progress.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pullpush import AsyncIteratorCombiner


async def analysis_step(name: str, steps: int, delay: float) -> AsyncIterator[dict[str, object]]:
    """Stand-in for a child step's progress stream (``entity.start()`` in the guide)."""
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        yield {"step": name, "progress": f"{step}/{steps}"}


async def main() -> None:
    combiner = AsyncIteratorCombiner(
        analysis_step("sentiment", 3, 0.03),
        analysis_step("topics", 2, 0.05),
        analysis_step("keywords", 4, 0.01),
    )
    print(f"starting {combiner.size} analyses in parallel")
    updates = []
    async for update in combiner.race_generator():
        print(update)
        updates.append(update)
    print("all analyses have completed")

    assert len(updates) == 3 + 2 + 4
    # Each stream keeps its own order; the streams interleave as they resolve.
    sentiment = [u["progress"] for u in updates if u["step"] == "sentiment"]
    assert sentiment == ["1/3", "2/3", "3/3"]
    assert updates[0]["step"] == "keywords"  # the fastest stream reports first


if __name__ == "__main__":
    asyncio.run(main())
