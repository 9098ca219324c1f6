"""The runner contract: peek the head task, check it is affordable, then pull it."""

from __future__ import annotations

import asyncio

from pullpush import DependencyGraph, PriorityDependencySourceObj, ResourceCapacitySource

COSTS = {"load": {"cpu": 2}, "parse": {"cpu": 1}, "index": {"cpu": 2}, "report": {"cpu": 1}}


async def test_peek_afford_pull_complete_runs_a_graph_within_capacity() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"load": [], "parse": ["load"], "index": ["load"], "report": ["parse", "index"]})
    source = PriorityDependencySourceObj(
        graph, {key: key for key in COSTS}, priority_fn=lambda key, task: -COSTS[key]["cpu"]
    )
    capacity = ResourceCapacitySource({"cpu": 2})
    changed = asyncio.Event()
    started: list[str] = []
    peak = 0

    async def run(key: str) -> None:
        await asyncio.sleep(0)
        capacity.release(COSTS[key])
        source.complete(key)
        changed.set()

    tasks = []
    while not graph.is_done:
        key = source.peek_key()
        if key is None or not capacity.can_acquire(COSTS[key]):
            changed.clear()
            await changed.wait()
            continue
        capacity.acquire_immediate(COSTS[key])
        peak = max(peak, 2 - capacity.available["cpu"])
        assert await source.__anext__() == key  # the peeked task, nothing else
        started.append(key)
        tasks.append(asyncio.create_task(run(key)))
    await asyncio.gather(*tasks)
    assert started == ["load", "parse", "index", "report"]
    assert peak <= 2 and capacity.available == {"cpu": 2}
    await source.aclose()
