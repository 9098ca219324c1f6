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
import contextlib
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
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
    TaskTimeoutError,
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
    import _process_tasks as tasks
    from pullpush import ProcessExecutor

    async def main():
        executor = ProcessExecutor(2, start_method=sys.argv[1])
        await executor.start()
        await executor.run(os.getpid)
        if sys.argv[2] in ("busy", "gil"):  # both workers stay busy, never reading
            task = tasks.occupy if sys.argv[2] == "busy" else tasks.hold_gil
            streams = [executor.stream(task) for _ in range(2)]
            for stream in streams:
                await stream.__anext__()
        print(" ".join(map(str, executor.pids)), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("busy", ["idle", "busy", "gil"])
@pytest.mark.parametrize("start_method", ["forkserver", "spawn", "fork"])
def test_workers_exit_within_two_seconds_when_the_parent_is_killed(
    start_method: str, busy: str
) -> None:
    """Busy forkserver workers are the hard case (regression, found by the stress
    suite): their parent is the forkserver, so no parent-death signal comes, and their
    loop never reads the call pipe's end; a watchdog thread sees the pipe hang up.
    Regression (issue 13): a worker running C code that holds the GIL ("gil") starves
    that thread; its forkserver never exited either, as every worker held the server's
    "alive" pipe. Workers now close that pipe, so the server exits with the parent and
    the kernel kills its workers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(tasks.__file__)])}
    script = PARENT
    parent = subprocess.Popen(
        [sys.executable, "-c", script, start_method, busy],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env=env,
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
    for pid in alive:  # leave nothing behind, whatever happened
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert not alive, f"workers {alive} outlived their parent by 2 s"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_cancelled_task_ends_with_the_cancel_whatever_it_does_as_it_stops() -> None:
    """Regression (found by the stress suite): a timed-out task that caught the
    cancellation and returned, or a generator that raised as it was closed, ended with
    its own result or error instead of TaskTimeoutError."""
    runners = [tasks.swallows_cancel, tasks.raises_on_close]
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        runner = HierarchicalTaskPoolRunner(
            "stops", runners, CapacitySource(2), executor=executor, timeout=0.3
        )
        envelopes = await collect(runner.run_tasks())
    ends = {e.task_id: e.error for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
    assert [type(ends[0]), type(ends[1])] == [TaskTimeoutError, TaskTimeoutError]
    closing = ends[1].__context__  # what the generator raised as it stopped is kept
    assert type(closing).__name__ == "CloseError" and isinstance(closing.__cause__, RemoteTraceback)


async def test_cancelling_a_queued_task_does_not_kill_the_task_running_before_it() -> None:
    """Regression (found by the stress suite): a task cancelled while it waited in a
    worker's queue behind a task that never awaits got that worker terminated after
    cancel_grace, failing the innocent running task with WorkerCrashedError."""
    async with ProcessExecutor(1, prefetch=1, cancel_grace=0.1) as executor:
        innocent, queued = _Recorder(), _Recorder()
        executor.submit(0, functools.partial(tasks.doze, "done", 1.0), innocent)
        handle = executor.submit(1, tasks.sleep_forever, queued)
        await asyncio.sleep(0.2)
        handle.cancel(TaskTimeoutError("gave up"))
        while innocent.end is None or queued.end is None:
            await asyncio.sleep(0.01)
        assert innocent.end == ("FINAL", "done")
        assert queued.end[0] == "ERROR" and isinstance(queued.end[1], TaskTimeoutError)
        assert executor.statistics().workers_lost == 0


async def test_cancelling_tasks_while_the_workers_start_does_not_break_the_pool() -> None:
    """Regression (found by the stress suite): tasks cancelled while their workers were
    still starting got those workers terminated as stuck; such deaths counted as
    'died before ready', and three in a row broke the pool for good."""
    async with ProcessExecutor(
        2, cancel_grace=0.05, initializer=time.sleep, initargs=(0.5,)
    ) as executor:
        for _ in range(3):
            runner = HierarchicalTaskPoolRunner(
                "early",
                [functools.partial(tasks.where_and_when, 1.0) for _ in range(4)],
                CapacitySource(4),
                executor=executor,
            )
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(collect(runner.run_tasks()), 0.01)  # leave at once
            await asyncio.sleep(0.2)  # past cancel_grace, the workers still starting
        # (A worker slow to read a CANCEL on a loaded machine may still be replaced:
        # the grace is tiny. What must not happen is a broken pool.)
        assert await executor.run(tasks.identity, 1) == 1


class _Recorder:
    """A TaskEvents that keeps a task's end: ("FINAL", value) or ("ERROR", error)."""

    def __init__(self) -> None:
        self.end: tuple[str, Any] | None = None

    def task_intermediate(self, task_id: int, value: Any) -> None:
        pass

    def task_final(self, task_id: int, value: Any) -> None:
        self.end = ("FINAL", value)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.end = ("ERROR", error)


async def test_what_a_crash_reruns_and_what_it_never_does(tmp_path: Path) -> None:
    """Decided: a worker's death loses the results it had not sent yet. A task that
    streamed is never run again (its values would come twice); its end is sent before
    the next task starts, so it is not lost either. A plain task that had finished
    but whose result was still unsent runs again elsewhere: at least once, like
    Ray's retries, so every task not itself at fault completes (found by the stress
    suite: streams used to be run again and arrive twice)."""
    path = tmp_path / "runs"
    runners = [
        functools.partial(tasks.record_run, str(path), "plain"),
        functools.partial(tasks.die, "os._exit"),
        functools.partial(tasks.record_stream, str(path), "stream"),
        functools.partial(tasks.die, "os._exit"),
    ]
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=4) as executor:
        runner = HierarchicalTaskPoolRunner("rerun", runners, CapacitySource(4), executor=executor)
        envelopes = await collect(runner.run_tasks())
    ends = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
    assert [ends[i].type for i in range(4)] == [EnvelopeType.FINAL, EnvelopeType.ERROR] * 2
    assert isinstance(ends[1].error, WorkerCrashedError)
    assert isinstance(ends[3].error, WorkerCrashedError)
    assert [e.value for e in envelopes if e.type is EnvelopeType.INTERMEDIATE] == [0, 1, 2]
    runs = path.read_text().split()
    assert runs.count("stream") == 1 and runs.count("plain") in (1, 2)


async def test_fix_a_killed_worker_reports_its_own_exit_code_while_its_replacement_starts() -> None:
    """Regression: ``Process.start()`` polls every child multiprocessing knows of, from
    the thread that starts it; a replacement worker starting on a thread while the loop
    reaped a dead one read the forkserver's exit-status pipe twice at once, and one
    read saw EOF: the crash was reported with exit code 255 instead of the worker's
    (about 1 kill in 250, found by the stress suite). The workers are now the
    executor's alone to reap."""
    import multiprocessing.process

    async with ProcessExecutor(2, tasks_per_worker=2) as executor:
        pids = set(executor.pids)
        known = {p.pid for p in multiprocessing.process._children}  # type: ignore[attr-defined]
        assert not pids & known
        # Kills four at a time, so replacements start while dead workers are reaped.
        outcomes = []
        for _ in range(10):
            outcomes += await asyncio.gather(
                *(executor.run(tasks.die, "os._exit") for _ in range(4)), return_exceptions=True
            )
        assert all(isinstance(o, WorkerCrashedError) for o in outcomes), outcomes
        assert {(o.exitcode, o.signal) for o in outcomes} == {(7, None)}
        assert not set(executor.pids) & {
            p.pid
            for p in multiprocessing.process._children  # type: ignore[attr-defined]
        }
