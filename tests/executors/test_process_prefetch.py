"""What the process executor queues per worker: skewed tasks still balance (a long
task holds at most one queued task hostage), and a prefetch learned on trivial tasks
queues large calls only within a byte bound (issue 15 item 2)."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from typing import Any

import _process_tasks as tasks
import cloudpickle
import pytest

from pullpush import CapacitySource, HierarchicalTaskPoolRunner, ProcessExecutor
from pullpush.executors.process import _dispatch
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(tasks)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(90)

MiB = 2**20


# -- in the workers ------------------------------------------------------------------------


def wait_for(path: str, timeout: float = 30.0) -> str:
    """Block this worker (synchronously) until ``path`` exists."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return "released"


def sized(data: bytes, path: str | None = None) -> int:
    """One kind of task, trivial or (given ``path``) waiting, of any call size."""
    if path is not None:
        wait_for(path)
    return len(data)


# -- in the parent -------------------------------------------------------------------------


class _Collector:
    """TaskEvents that record how a task ended."""

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.ended = asyncio.Event()

    def task_intermediate(self, task_id: int, value: Any) -> None:
        pass

    def task_final(self, task_id: int, value: Any) -> None:
        self.value = value
        self.ended.set()

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.error = error
        self.ended.set()


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


async def _ends(collector: _Collector, timeout: float = 30.0) -> None:
    await asyncio.wait_for(collector.ended.wait(), timeout)


async def test_a_long_task_holds_at_most_one_queued_task_hostage(tmp_path: Any) -> None:
    release = str(tmp_path / "release")
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        long, shorts = _Collector(), [_Collector() for _ in range(20)]
        executor.submit(0, functools.partial(wait_for, release), long)
        for i, collector in enumerate(shorts):
            executor.submit(i + 1, functools.partial(tasks.identity, i), collector)
        # The other worker runs every short task but the one queued behind the long one.
        for _ in range(3000):
            if sum(c.ended.is_set() for c in shorts) >= len(shorts) - 1:
                break
            await asyncio.sleep(0.01)
        assert sum(c.ended.is_set() for c in shorts) == len(shorts) - 1
        assert not long.ended.is_set()
        _touch(release)
        for collector in [long, *shorts]:
            await _ends(collector)
        assert [c.value for c in shorts] == list(range(20))
        assert long.value == "released"
        assert executor.capacity.in_use == 0


async def test_a_prefetch_learned_on_trivial_tasks_queues_large_calls_by_bytes(
    tmp_path: Any,
) -> None:
    release = str(tmp_path / "release")
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        trivial = [functools.partial(sized, b"x") for _ in range(3000)]
        runner = HierarchicalTaskPoolRunner(
            "trivial", trivial, CapacitySource(10**6), executor=executor
        )
        assert len(await collect(runner.run_tasks())) == 3000
        assert executor.prefetch >= 16  # learned deep on trivial tasks
        chunk = b"c" * MiB
        collectors = [_Collector() for _ in range(16)]
        for i, collector in enumerate(collectors):
            executor.submit(i, functools.partial(sized, chunk, release), collector)
        for worker in executor._workers:
            # Running, one ahead, then calls while they hold at most the byte bound.
            assert len(worker.tasks) * MiB <= max(_dispatch._PREFETCH_BYTES, 2 * MiB)
        assert executor.statistics().pending >= 16 - 2 * _dispatch._PREFETCH_BYTES // MiB
        _touch(release)
        for collector in collectors:
            await _ends(collector)
        assert all(c.value == MiB for c in collectors)
        assert executor.capacity.in_use == 0
