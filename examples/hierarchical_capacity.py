"""Hierarchical capacity: a global limit of 30 shared by three workflows of 14 each
(seed guide, section 3.2).

A task acquires a unit at every level: its workflow's and the global one. Any two
workflows at full speed (14 + 14) leave 2 units for the third, and an idle workflow's
share goes to the busy ones.

Run: ``python examples/hierarchical_capacity.py``
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from pullpush import CapacitySource, HierarchicalTaskPoolRunner

in_flight: Counter[str] = Counter()
peaks: Counter[str] = Counter()


def query(workflow: str, i: int) -> Callable[[], object]:
    """A task runner: one database query of ``workflow``."""

    async def run() -> str:
        in_flight[workflow] += 1
        in_flight["global"] += 1
        peaks[workflow] = max(peaks[workflow], in_flight[workflow])
        peaks["global"] = max(peaks["global"], in_flight["global"])
        await asyncio.sleep(0.01)
        in_flight[workflow] -= 1
        in_flight["global"] -= 1
        return f"{workflow}-{i}"

    return run


async def main() -> None:
    GLOBAL_DB_CAPACITY = CapacitySource(30)

    workflow_a_capacity = CapacitySource(14, parent=GLOBAL_DB_CAPACITY)
    runner_a = HierarchicalTaskPoolRunner(
        "workflow-a-pool", [query("a", i) for i in range(100)], workflow_a_capacity
    )
    workflow_b_capacity = CapacitySource(14, parent=GLOBAL_DB_CAPACITY)
    runner_b = HierarchicalTaskPoolRunner(
        "workflow-b-pool", [query("b", i) for i in range(100)], workflow_b_capacity
    )
    workflow_c_capacity = CapacitySource(14, parent=GLOBAL_DB_CAPACITY)
    runner_c = HierarchicalTaskPoolRunner(
        "workflow-c-pool", [query("c", i) for i in range(100)], workflow_c_capacity
    )

    async def drain(runner: HierarchicalTaskPoolRunner) -> int:
        return sum([1 async for e in runner.run_tasks() if e.type == "FINAL"])

    done = await asyncio.gather(drain(runner_a), drain(runner_b), drain(runner_c))

    print(f"queries done per workflow: {done}; peak in flight: {dict(peaks)}")
    assert list(done) == [100, 100, 100]
    assert peaks["global"] == 30  # the global limit was reached and never exceeded
    assert all(peaks[w] <= 14 for w in "abc")
    assert GLOBAL_DB_CAPACITY.available == 30


if __name__ == "__main__":
    asyncio.run(main())
