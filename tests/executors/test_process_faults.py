"""The crash matrix of the process executor, and the death of its parent.

Stages by failures. A failure in a stage that runs in a worker -- unpickling the call,
running it, pickling its result or exception -- fails exactly that task with a precise
error, the worker is replaced if it died, and every other task completes. In the
stages that run in the parent (pickling the call, unpickling the result) an exception
or ``sys.exit`` fails only that task; ``os._exit``, SIGKILL or a segfault there would
end the caller's own process, which no executor can survive, so they are not tested.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import _process_tasks as tasks
import cloudpickle
import psutil
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    RemoteTraceback,
    TaskPicklingError,
    WorkerCrashedError,
)
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(tasks)

pytestmark = pytest.mark.timeout(120)

FAILURES = ["exception", "sys.exit", "os._exit", "SIGKILL", "segfault"]
WORKER_STAGES = ["unpickle call", "run", "pickle result", "pickle exception"]


def bad_runner(stage: str, how: str) -> Any:
    if stage == "unpickle call":
        return functools.partial(tasks.identity, tasks.DiesWhenUnpickled(how))
    if stage == "run":
        return functools.partial(tasks.die, how)
    if stage == "pickle result":
        return functools.partial(tasks.make_dies_when_pickled, how)
    if stage == "pickle exception":
        return functools.partial(tasks.raise_error_dies_when_pickled, how)
    if stage == "pickle call":
        return functools.partial(tasks.identity, tasks.DiesWhenPickled(how))
    if stage == "unpickle result":
        return functools.partial(tasks.make_dies_when_unpickled, how)
    raise AssertionError(stage)


def check_error(stage: str, how: str, error: BaseException | None) -> None:
    assert error is not None
    if how in ("os._exit", "SIGKILL", "segfault", "sys.exit"):
        assert isinstance(error, WorkerCrashedError), repr(error)
        assert error.task_id == 5
        if how == "os._exit" or how == "sys.exit":
            assert (error.exitcode, error.signal) == (7, None)
        else:
            expected = signal.SIGKILL if how == "SIGKILL" else signal.SIGSEGV
            assert (error.exitcode, error.signal) == (None, expected)
        return
    if stage == "run":
        assert isinstance(error, ValueError) and "exception in the worker" in str(error)
        assert isinstance(error.__cause__, RemoteTraceback)
    elif stage == "unpickle call":
        assert isinstance(error, TaskPicklingError) and "unpickled in the worker" in str(error)
    elif stage == "pickle result":
        assert isinstance(error, TaskPicklingError), repr(error)
        assert "result" in str(error) and "DiesWhenPickled" in str(error)
    elif stage == "pickle exception":
        assert isinstance(error, TaskPicklingError)
        assert "ErrorDiesWhenPickled" in str(error) and "could not be pickled" in str(error)


async def run_matrix_case(stage: str, how: str, executor: ProcessExecutor) -> None:
    runners: list[Any] = [functools.partial(tasks.identity, i) for i in range(10)]
    runners[5] = bad_runner(stage, how)
    runner = HierarchicalTaskPoolRunner(
        f"{stage}/{how}", runners, CapacitySource(4), executor=executor
    )
    envelopes = await asyncio.wait_for(collect(runner.run_tasks()), 60)
    terminal = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
    assert sorted(terminal) == list(range(10))
    for task_id, envelope in terminal.items():
        if task_id == 5:
            assert envelope.type is EnvelopeType.ERROR
            check_error(stage, how, envelope.error)
        else:
            assert (envelope.type, envelope.value) == (EnvelopeType.FINAL, task_id)


@pytest.mark.parametrize("how", FAILURES)
@pytest.mark.parametrize("stage", WORKER_STAGES)
async def test_crash_matrix_in_the_worker(stage: str, how: str) -> None:
    async with assert_no_leaks(), ProcessExecutor(2, prefetch=2) as executor:
        await run_matrix_case(stage, how, executor)
        assert executor.statistics().workers == 2
        assert await executor.run(tasks.identity, "still working") == "still working"


@pytest.mark.parametrize("how", ["exception", "sys.exit"])
@pytest.mark.parametrize("stage", ["pickle call", "unpickle result"])
async def test_crash_matrix_in_the_parent(stage: str, how: str) -> None:
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        runners: list[Any] = [functools.partial(tasks.identity, i) for i in range(6)]
        runners[3] = bad_runner(stage, how)
        runner = HierarchicalTaskPoolRunner("parent", runners, CapacitySource(3), executor=executor)
        envelopes = await collect(runner.run_tasks())
        errors = [e for e in envelopes if e.type is EnvelopeType.ERROR]
        assert [e.task_id for e in errors] == [3]
        error = errors[0].error
        assert isinstance(error, TaskPicklingError)
        if stage == "pickle call":  # names the argument and its type
            assert "argument 0 (DiesWhenPickled)" in str(error), str(error)
        else:
            assert "the result (" in str(error) and "DiesWhenUnpickled" in str(error), str(error)
        assert sorted(e.value for e in envelopes if e.type is EnvelopeType.FINAL) == [0, 1, 2, 4, 5]
        assert executor.statistics().workers_lost == 0


async def test_tasks_queued_on_a_dying_worker_run_elsewhere() -> None:
    async with ProcessExecutor(1, prefetch=8) as executor:
        runners: list[Any] = [functools.partial(tasks.die, "SIGKILL")]
        runners += [functools.partial(tasks.identity, i) for i in range(8)]
        runner = HierarchicalTaskPoolRunner(
            "orphans", runners, CapacitySource(9), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
        assert isinstance(envelopes[0].error, WorkerCrashedError) or any(
            isinstance(e.error, WorkerCrashedError) for e in envelopes
        )
        assert sorted(e.value for e in envelopes if e.type is EnvelopeType.FINAL) == list(range(8))


PARENT = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pullpush import ProcessExecutor

    async def main():
        executor = ProcessExecutor(2)
        await executor.start()
        await executor.run(os.getpid)
        print(" ".join(map(str, executor.pids)), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn", "fork"])
def test_workers_exit_within_two_seconds_when_the_parent_is_killed(start_method: str) -> None:
    script = PARENT.replace(
        "ProcessExecutor(2)", f"ProcessExecutor(2, start_method={start_method!r})"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + 2.0
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.02)
    assert not alive, f"workers {alive} outlived their parent by 2 s"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
