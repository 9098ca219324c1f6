"""A pytest stress suite written with pullpush's pytest plugin (installed with
pullpush): seeded faults -- exceptions, worker kills, timeouts -- in a process pool,
and the run's contract checked: one terminal envelope per task, each fault's error,
capacity back, no worker or fd left behind. Run it with ``pytest examples/stress_suite.py``
(a failing run prints its seed; ``--pullpush-seed N`` replays it), or as a script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pullpush import CapacitySource, HierarchicalTaskPoolRunner, ProcessExecutor
from pullpush.testing import FaultPlan


def square(x: int) -> int:
    return x * x


@pytest.mark.pullpush_async  # runs on asyncio's loop and on uvloop
@pytest.mark.pullpush_stress
@pytest.mark.timeout(120)
# prefetch=0: a task queued in a worker behind a hanging one would time out waiting.
@pytest.mark.parametrize(
    "process_executor", [{"max_workers": 2, "prefetch": 0, "cancel_grace": 0.2}], indirect=True
)
async def test_faults_in_a_process_pool(process_executor: ProcessExecutor, fault_seed: int) -> None:
    plan = FaultPlan(fault_seed, raises=0.1, kills=0.03, hangs=0.03, hang_seconds=30)
    tasks = [plan.task(i, square, i) for i in range(60)]
    capacity = CapacitySource(4)
    runner = HierarchicalTaskPoolRunner(
        "stress", tasks, capacity, executor=process_executor, timeout=5.0
    )
    envelopes = [envelope async for envelope in runner.run_tasks()]
    tally = plan.check(envelopes, len(tasks), expected=square)
    assert sum(tally.values()) == len(tasks)
    assert capacity.in_use == 0
    # The pool still works after the faults.
    assert await process_executor.run(square, 7) == 49
    # The plugin closes process_executor on this loop, then checks for leaks.


if __name__ == "__main__":
    # A fresh interpreter: pytest must import the plugin (and rewrite its asserts) itself.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "pullpush.testing.plugin"]
    sys.exit(subprocess.call([*command, __file__, *sys.argv[1:]]))
