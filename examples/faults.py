"""Fault semantics: every started task ends in exactly one FINAL or ERROR envelope;
errors keep their type, with the worker's traceback chained; a worker crash fails only
the task it ran; timeouts and early exits cancel tasks; capacity always comes back.

Run: ``python examples/faults.py``
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter

from pullpush import (
    CapacitySource,
    HierarchicalTaskPoolRunner,
    RemoteTraceback,
    TaskTimeoutError,
    WorkerCrashedError,
)


def ok(i: int) -> int:
    return i


def fails() -> None:
    raise ValueError("bad input in chunk 7")


def crashes() -> None:
    os._exit(3)  # the worker process dies


def hangs() -> None:
    time.sleep(60)


async def main() -> None:
    capacity = CapacitySource(4)
    tasks = [lambda: ok(1), fails, crashes, lambda: ok(2)]
    runner = HierarchicalTaskPoolRunner("faults", tasks, capacity, executor="process")
    terminal: Counter[int] = Counter()
    errors = {}
    async for envelope in runner.run_tasks():  # stop_on_error=False: the pool goes on
        if envelope.type in ("FINAL", "ERROR"):
            terminal[envelope.task_id] += 1
        if envelope.type == "ERROR":
            errors[envelope.task_id] = envelope.error

    assert terminal == {0: 1, 1: 1, 2: 1, 3: 1}  # exactly one terminal envelope each
    error = errors[1]
    assert isinstance(error, ValueError)  # the type survives the trip from the worker
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in fails" in error.__cause__.text  # the worker's own traceback
    crash = errors[2]
    assert isinstance(crash, WorkerCrashedError) and crash.exitcode == 3
    print(f"error: {error!r}; crash: {crash}")

    # A timeout cancels the task; a worker stuck in CPU-bound or blocking code is
    # terminated (and would be replaced if the pool went on).
    runner = HierarchicalTaskPoolRunner(
        "timeouts", [hangs], capacity, executor="process", timeout=0.5
    )
    outcomes = [e async for e in runner.run_tasks()]
    assert [type(e.error) for e in outcomes] == [TaskTimeoutError]

    # Leaving the loop early cancels what still runs; capacity comes back either way.
    runner = HierarchicalTaskPoolRunner("early", [lambda i=i: ok(i) for i in range(100)], capacity)
    async with contextlib.aclosing(runner.run_tasks()) as envelopes:
        async for _ in envelopes:
            break  # aclosing() runs the runner's cleanup right here
    assert capacity.available == capacity.limit
    print("timeouts, crashes and early exits: every unit of capacity came back")


if __name__ == "__main__":
    asyncio.run(main())
