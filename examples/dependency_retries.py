"""A dependency graph whose failed tasks the user retries (the original library's
bridge and retry patterns, FEATURES 2.14.1).

``on_complete`` calls ``source.complete(key)``, which makes the dependents ready;
``on_error`` keeps a retry counter in a map and calls ``source.fail(key)`` (run it
again) up to ``MAX_RETRIES`` times, then ``source.abort(key)`` (give up, with every
dependent). The runner calls both while the task's node is still running, so the
callback decides; its own ``retry=`` policy applies only to a node the callback
leaves running. Every failed attempt streams its own ERROR envelope.

Run: ``python examples/dependency_retries.py``
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from pullpush import (
    DependencyGraph,
    DependencySourceObj,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
)

MAX_RETRIES = 3
FAILURES = {"fetch": 0, "parse": 2, "index": 0, "thumbnails": 99, "publish": 0}
attempts: Counter[str] = Counter()


def make_runner(key: str) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        attempts[key] += 1
        await asyncio.sleep(0.01)
        if attempts[key] <= FAILURES[key]:
            raise ConnectionError(f"{key}: attempt {attempts[key]} lost its connection")
        return f"{key} done"

    return run


async def main() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all(
        {
            "fetch": [],
            "parse": ["fetch"],
            "index": ["parse"],
            "thumbnails": ["fetch"],
            "publish": ["thumbnails"],
        }
    )
    tasks: dict[str, ScheduledTask[str]] = {}
    source = DependencySourceObj(graph, tasks)
    retries: Counter[str] = Counter()

    def on_complete(key: str, result: object) -> None:
        source.complete(key)

    def on_error(key: str, error: BaseException) -> None:
        retries[key] += 1
        if retries[key] < MAX_RETRIES:
            source.fail(key)
        else:
            source.abort(key)

    for key in FAILURES:
        tasks[key] = ScheduledTask(
            key, make_runner(key), on_complete=on_complete, on_error=on_error
        )

    capacity = ResourceCapacitySource({"capacity": 2})
    runner: ScheduledTaskPoolRunner[str] = ScheduledTaskPoolRunner("pipeline", source, capacity)
    outcome: Counter[tuple[str, str]] = Counter()
    async for envelope in runner.run_tasks():  # stop_on_error=False: the pool goes on
        print(f"{envelope.key:<10} {envelope.type.value:<5} {envelope.value or envelope.error}")
        outcome[envelope.key, envelope.type.value] += 1

    assert outcome["parse", "ERROR"] == 2
    assert outcome["thumbnails", "ERROR"] == MAX_RETRIES
    finals = {key for key, kind in outcome if kind == "FINAL"}
    assert finals == {"fetch", "parse", "index"}
    assert graph.get_state("publish") == "aborted"  # never started: no envelope
    assert graph.is_done and capacity.available == {"capacity": 2}
    print("aborted:", sorted(graph.aborted))


if __name__ == "__main__":
    asyncio.run(main())
