"""Library bugs the stress suite found and that are not fixed yet: each test fails
while its bug is open (``xfail(strict=True)``), so fixing the bug makes it XPASS and
asks for the marker to go."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _stress_tasks as tasks
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskTimeoutError,
)
from pullpush.testing import collect

pytestmark = pytest.mark.stress


def known_bug(loop_kind: str, reason: str) -> Callable[[Any], Any]:
    """Mark a test that fails while its bug is open (strict xfail), with a timeout,
    on the loop ``loop_kind``."""

    def mark(test: Any) -> Any:
        test = pytest.mark.parametrize("loop_kind", [loop_kind])(test)
        test = pytest.mark.timeout(60)(test)
        return pytest.mark.xfail(strict=True, reason=reason)(test)

    return mark


@known_bug(
    "asyncio",
    "process executor: a task that finished in a worker runs again when the next "
    "task kills that worker before its output was flushed (its slot is already clear, "
    "so the parent re-queues it as not started)",
)
async def test_a_task_that_finished_is_not_run_again_when_the_next_kills_its_worker(
    loop_kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "runs"
    runners = [
        functools.partial(tasks.record_run, str(path), "plain"),
        functools.partial(tasks.kill, "os._exit"),
        functools.partial(tasks.record_stream, str(path), "stream"),
        functools.partial(tasks.kill, "os._exit"),
    ]
    async with ProcessExecutor(1, prefetch=4) as pool:
        runner = HierarchicalTaskPoolRunner("rerun", runners, CapacitySource(4), executor=pool)
        envelopes = await collect(runner.run_tasks())
    runs = Counter(path.read_text().split())
    intermediate = [e.value for e in envelopes if e.type is EnvelopeType.INTERMEDIATE]
    assert intermediate == [0, 1, 2]  # one per yield
    assert runs == {"plain": 1, "stream": 1}  # each task ran once


@known_bug(
    "uvloop",
    "process executor: a task cancelled while queued on a worker that is still "
    "starting gets that worker terminated as stuck after cancel_grace; such deaths count "
    "as 'died before ready', and three in a row break the pool for good",
)
async def test_leaving_runs_early_while_the_workers_start_does_not_break_the_pool(
    loop_kind: str,
) -> None:
    # A slow initializer keeps each worker starting for 0.5 s; the same happens without
    # one whenever starting a worker takes longer than cancel_grace.
    async with ProcessExecutor(
        2, cancel_grace=0.05, initializer=time.sleep, initargs=(0.5,)
    ) as pool:
        for _ in range(3):
            runners = [functools.partial(tasks.nap, i, 1.0) for i in range(4)]
            runner = HierarchicalTaskPoolRunner("early", runners, CapacitySource(4), executor=pool)
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(collect(runner.run_tasks()), 0.01)  # leave at once
            await asyncio.sleep(0.2)  # past cancel_grace
        assert await pool.run(tasks.ok, 1) == 1


@known_bug(
    "asyncio",
    "process executor: a timed-out task that does not end with CancelledError in "
    "its worker (it catches it and returns; a generator's finally raises as it is closed) "
    "ends with its own FINAL value or error, not TaskTimeoutError (the executor contract "
    "says the cancel wins; the inline and thread executors do so)",
)
async def test_a_timed_out_process_task_ends_with_the_timeout_whatever_it_does_as_it_stops(
    loop_kind: str,
) -> None:
    runners = [tasks.swallows_cancel, functools.partial(tasks.raises_on_close, 0.01)]
    async with ProcessExecutor(2) as pool:
        runner = HierarchicalTaskPoolRunner(
            "stops", runners, CapacitySource(2), executor=pool, timeout=0.3
        )
        envelopes = await collect(runner.run_tasks())
    ends = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
    assert [type(ends[i].error) for i in (0, 1)] == [TaskTimeoutError] * 2


@known_bug(
    "uvloop",
    "process executor: a task cancelled while it waits in a worker's queue behind "
    "a task that does not await gets that worker terminated after cancel_grace, which "
    "fails the innocent running task with WorkerCrashedError (SIGTERM)",
)
async def test_cancelling_a_queued_task_does_not_kill_the_task_running_before_it(
    loop_kind: str,
) -> None:
    scheduled = [
        ScheduledTask("innocent", functools.partial(tasks.doze, 0, 1.0)),
        ScheduledTask("times out", tasks.hang, timeout=0.2),  # queued behind it
    ]
    async with ProcessExecutor(1, prefetch=1, cancel_grace=0.1) as pool:
        runner = ScheduledTaskPoolRunner(
            "victim", scheduled, ResourceCapacitySource({"capacity": 2}), executor=pool
        )
        envelopes = await collect(runner.run_tasks())
    ends = {e.key: e for e in envelopes}
    assert isinstance(ends["times out"].error, TaskTimeoutError)
    assert (ends["innocent"].type, ends["innocent"].value) == (EnvelopeType.FINAL, 0)
