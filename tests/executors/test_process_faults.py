"""The crash matrix of the process executor, and the death of its parent.

Stages by failures. A failure in a stage that runs in a worker -- unpickling the call,
running it, pickling its result or exception -- fails exactly that task with a precise
error, the worker is replaced if it died (``sys.exit`` does not kill it: it is the
task's error), and every other task completes. In the
stages that run in the parent (pickling the call, unpickling the result) an exception
or ``sys.exit`` fails only that task; ``os._exit``, SIGKILL or a segfault there would
end the caller's own process, which no executor can survive, so they are not tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable
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
    RemoteTaskError,
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
    if how == "sys.exit":  # the task's error, naming the stage; the worker lives on
        if stage == "run":
            assert isinstance(error, SystemExit) and error.code == 7, repr(error)
            assert isinstance(error.__cause__, RemoteTraceback)
            return
        assert isinstance(error, TaskPicklingError), repr(error)
        expected = {
            "unpickle call": "the task arguments could not be unpickled in the worker: "
            "unpickling it called sys.exit(7)",
            "pickle result": "the task's result could not be pickled: cannot pickle "
            "DiesWhenPickled object: pickling it called sys.exit(7)",
            "pickle exception": "task 5 raised _process_tasks.ErrorDiesWhenPickled: sys.exit",
        }[stage]
        assert expected in str(error), str(error)
        if stage == "pickle exception":
            assert str(error).endswith(
                "-- and that exception could not be pickled: pickling it called sys.exit(7)"
            ), str(error)
        return
    if how in ("os._exit", "SIGKILL", "segfault"):
        assert isinstance(error, WorkerCrashedError), repr(error)
        assert (error.task_id, error.retries) == (5, None)  # it died while running
        if how == "os._exit":
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
        if how in ("exception", "sys.exit"):
            assert executor.statistics().workers_lost == 0
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


# -- issue 13: crash re-runs, the parent's reader, the worker's errors, sys.exit ---------------


async def run_all(executor: ProcessExecutor, runners: list[Any], **options: Any) -> dict[int, Any]:
    """Run ``runners`` on ``executor`` at once; check that the run ends, that each task
    ends exactly once, that all capacity is back and that the executor holds nothing;
    return the terminal envelopes by task id."""
    capacity = CapacitySource(len(runners))
    runner = HierarchicalTaskPoolRunner("faults", runners, capacity, executor=executor, **options)
    envelopes = await asyncio.wait_for(collect(runner.run_tasks()), 30)
    ends = [e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE]
    assert sorted(e.task_id for e in ends) == list(range(len(runners)))
    assert capacity.available == capacity.limit
    statistics = executor.statistics()
    assert (statistics.in_flight, statistics.pending) == (0, 0)
    return {e.task_id: e for e in ends}


def check_final(ends: dict[int, Any], task_ids: Any) -> None:
    """The tasks ``task_ids`` (runners ``identity(task_id)``) ended in FINAL."""
    got = {i: (ends[i].type, ends[i].value) for i in task_ids}
    assert got == {i: (EnvelopeType.FINAL, i) for i in task_ids}


LOST_RESULTS = [
    ("forkserver", "libc exit"),
    ("forkserver", "segfault"),
    ("spawn", "libc exit"),
    ("fork", "libc exit"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("start_method", "how"), LOST_RESULTS)
async def test_fix_a_task_whose_worker_dies_after_it_returned_runs_again_at_most_twice(
    start_method: str, how: str
) -> None:
    """Regression (issue 13, item 2): a plain task that returned, but whose worker died
    before its result left (here its argument ends the process as it is freed), was
    sent again without limit (1,326 workers in 20 s). It runs again at most
    ``max_crash_retries`` (2) times, then ends in WorkerCrashedError saying so. Task 0
    ran just before it in the same worker and lost its result too: run again alone,
    it completes. Tasks 2 and 3, queued behind it, never started there: sent back each
    time, they do not count, and complete."""
    runners: list[Any] = [functools.partial(tasks.identity, i) for i in range(4)]
    runners[1] = functools.partial(tasks.ignores, tasks.DiesWhenCollected(how), 1)
    async with (
        assert_no_leaks(),
        ProcessExecutor(1, start_method=start_method, prefetch=4) as executor,
    ):
        ends = await run_all(executor, runners)
        check_final(ends, [0, 2, 3])
        error = ends[1].error
        assert isinstance(error, WorkerCrashedError), repr(error)
        assert pickle.loads(pickle.dumps(error)).args == error.args
        assert isinstance(error, WorkerCrashedError), repr(error)
        assert (error.task_id, error.retries) == (1, 2)
        expected = (7, None) if how == "libc exit" else (None, signal.SIGSEGV)
        assert (error.exitcode, error.signal) == expected
        assert "before sending its result" in str(error)
        assert "it was retried 2 times, the limit), so it is not run again" in str(error)
        assert executor.statistics().workers_lost == 3  # task 1's three runs, no other
        assert await executor.run(tasks.identity, "still working") == "still working"


async def test_fix_max_crash_retries_zero_never_runs_a_task_again() -> None:
    with pytest.raises(ValueError, match="max_crash_retries"):
        ProcessExecutor(1, max_crash_retries=-1)
    async with assert_no_leaks(), ProcessExecutor(1, max_crash_retries=0) as executor:
        with pytest.raises(WorkerCrashedError) as info:
            await executor.run(tasks.ignores, tasks.DiesWhenCollected("libc exit"))
        assert (info.value.exitcode, info.value.retries) == (7, 0)
        assert str(info.value).endswith(
            "exited with code 7 before sending its result, so it is not run again"
        )
        assert executor.statistics().workers_lost == 1
        assert await executor.run(tasks.identity, 1) == 1


async def test_fix_a_task_that_closes_its_workers_fds_runs_again_at_most_twice() -> None:
    """Regression (issue 13, item 2): ``os.closerange(3, 1000)`` in a task cuts its
    worker's pipes; the worker dies having run it (and the tasks it started next)
    without sending anything. Those others run again alone and complete."""
    runners: list[Any] = [tasks.close_fds]
    runners += [functools.partial(tasks.identity, i) for i in range(1, 4)]
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=4) as executor:
        ends = await run_all(executor, runners)
        check_final(ends, [1, 2, 3])
        error = ends[0].error
        assert isinstance(error, WorkerCrashedError) and error.retries == 2, repr(error)
        assert executor.statistics().workers_lost == 3
        assert await executor.run(tasks.identity, 1) == 1


BAD_MESSAGES = [
    ("result", "BaseException subclass"),
    ("result", "GeneratorExit"),
    ("result", "KeyboardInterrupt"),
    ("value", "BaseException subclass"),
    ("exception", "GeneratorExit"),
    ("exception", "not an exception"),
]
RAISED = {
    "BaseException subclass": "CustomInterrupt: custom interrupt while unpickling",
    "GeneratorExit": "GeneratorExit: ",
    "KeyboardInterrupt": "KeyboardInterrupt: ",
    "not an exception": "it unpickled as a str object, not an exception",
}


@pytest.mark.parametrize(("what", "kind"), BAD_MESSAGES)
async def test_fix_a_message_that_cannot_be_decoded_fails_its_own_task_only(
    what: str, kind: str
) -> None:
    """Regression (issue 13, item 3): a result, value or exception whose unpickling in
    the parent raised a BaseException that is not an Exception (or an exception that
    unpickled as something else) escaped the pipe reader, and the other messages of
    that read were lost: their tasks never ended. Now it is its own task's ERROR."""
    bad = {
        "result": tasks.make_raises_when_unpickled,
        "value": tasks.yield_raises_when_unpickled,
        "exception": tasks.raise_error_raises_when_unpickled,
    }[what]
    runners: list[Any] = [functools.partial(bad, kind)]
    runners += [functools.partial(tasks.identity, i) for i in range(1, 6)]
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=8) as executor:
        ends = await run_all(executor, runners)
        check_final(ends, range(1, 6))
        error = ends[0].error
        if what == "exception":
            assert isinstance(error, RemoteTaskError), repr(error)
            assert str(error) == (
                f"_process_tasks.ErrorRaisesWhenUnpickled: carries {kind} -- and that "
                f"exception could not be unpickled in the parent: {RAISED[kind]}"
            )
            assert isinstance(error.__cause__, RemoteTraceback)
        else:
            assert isinstance(error, TaskPicklingError), repr(error)
            where = "the result" if what == "result" else "a value"
            assert str(error) == (
                f"task 0: {where} (_process_tasks.RaisesWhenUnpickled) could not be "
                f"unpickled in the parent: {RAISED[kind]}"
            )
            assert type(error.__cause__).__name__ == RAISED[kind].split(":")[0]
        assert executor.statistics().workers_lost == 0
        assert await executor.run(tasks.identity, "still working") == "still working"


class _Raising:
    """A TaskEvents that records what it is told, and whose ``callback`` raises
    ``error`` for task 0 (after recording)."""

    def __init__(self, callback: str, error: BaseException) -> None:
        self.callback = callback
        self.error = error
        self.ends: defaultdict[int, list[tuple[str, Any]]] = defaultdict(list)
        self.values: defaultdict[int, list[Any]] = defaultdict(list)

    def _raise(self, callback: str, task_id: int) -> None:
        if callback == self.callback and task_id == 0:
            raise self.error

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.task_intermediates(task_id, [value])

    def task_intermediates(self, task_id: int, values: list[Any]) -> None:
        self.values[task_id] += values
        self._raise("task_intermediates", task_id)

    def task_final(self, task_id: int, value: Any) -> None:
        self.ends[task_id].append(("FINAL", value))
        self._raise("task_final", task_id)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.ends[task_id].append(("ERROR", error))
        self._raise("task_error", task_id)

    def task_resources(self, task_id: int, usage: Any) -> None:
        self._raise("task_resources", task_id)


async def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "callback",
    ["task_final", "task_error", "task_error on a crash", "task_resources", "task_intermediates"],
)
async def test_fix_a_raising_task_events_callback_loses_no_other_message(callback: str) -> None:
    """Regression (issue 13, item 3): a ``TaskEvents`` callback (or a metrics hook in
    it) that raised lost the other messages of that read: their tasks never ended,
    capacity leaked. Now a callback that raises once its task ended is logged
    through the loop's exception handler; ``task_resources`` raising does not keep
    the task's end from being reported; a value's report raising fails that task
    (stopped in its worker) with what it raised. ``task_error`` raising for a task
    whose worker died no longer keeps the tasks queued there from running elsewhere."""
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: logged.append(context))
    error = ValueError(f"{callback} refused")
    events = _Raising(callback.split()[0], error)
    first: Any = {
        "task_error": functools.partial(tasks.fail, "boom"),
        "task_error on a crash": functools.partial(tasks.die, "os._exit"),
        "task_intermediates": tasks.started_then_waits,
    }.get(callback, functools.partial(tasks.identity, 0))
    measure = callback == "task_resources"
    try:
        async with (
            assert_no_leaks(),
            ProcessExecutor(1, prefetch=8, measure_memory=measure) as executor,
        ):
            # A first error warms the worker up (formatting a traceback reads the
            # sources once): then the six ends below come back in one read, as a rule.
            with pytest.raises(ValueError, match="warm-up"):
                await executor.run(tasks.fail, "warm-up")
            executor.submit(0, first, events)
            for i in range(1, 6):
                executor.submit(i, functools.partial(tasks.identity, i), events)
            await wait_until(lambda: len(events.ends) == 6)
            assert {i: events.ends[i] for i in range(1, 6)} == {
                i: [("FINAL", i)] for i in range(1, 6)
            }
            [(kind, value)] = events.ends[0]
            if callback == "task_intermediates":
                assert (kind, value) == ("ERROR", error)
                assert events.values[0] == ["started"]
                assert logged == []
            else:
                if callback == "task_error":
                    assert kind == "ERROR" and str(value) == "boom"
                elif callback == "task_error on a crash":
                    assert kind == "ERROR" and isinstance(value, WorkerCrashedError)
                    assert executor.statistics().workers_lost == 1
                else:
                    assert (kind, value) == ("FINAL", 0)
                assert [context["exception"] for context in logged] == [error]
                assert "ProcessExecutor" in logged[0]["message"]
            statistics = executor.statistics()
            assert (statistics.in_flight, statistics.pending) == (0, 0)
            assert await executor.run(tasks.identity, 7) == 7
    finally:
        loop.set_exception_handler(previous)


@pytest.mark.timeout(60)
def test_fix_a_callbacks_system_exit_goes_on_once_the_rest_of_the_read_is_handled() -> None:
    """Decided (issue 13, item 3): a callback's ``SystemExit`` (or KeyboardInterrupt)
    leaves the loop, as asyncio lets it out of any callback, but only once the other
    messages of the read were handled: no task is lost if the loop goes on."""
    loop = asyncio.new_event_loop()
    events = _Raising("task_final", SystemExit(3))
    executor = ProcessExecutor(1, prefetch=8)

    async def submit_and_wait() -> None:
        await executor.start()
        for i in range(6):
            executor.submit(i, functools.partial(tasks.identity, i), events)
        await asyncio.sleep(3600)

    try:
        main = loop.create_task(submit_and_wait())
        with pytest.raises(SystemExit):
            loop.run_until_complete(main)
        pids = executor.pids
        loop.run_until_complete(wait_until(lambda: len(events.ends) == 6))
        assert dict(events.ends) == {i: [("FINAL", i)] for i in range(6)}
        main.cancel()
        loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
        loop.run_until_complete(executor.aclose())
        assert not [p for p in pids if _alive(p)]
    finally:
        loop.close()


@pytest.mark.parametrize("picklable", [True, False])
async def test_fix_an_exception_whose_str_raises_still_ends_its_task(picklable: bool) -> None:
    """Regression (issue 13, item 4): building the ERROR of an exception whose
    ``__str__`` raises raised in the worker: the task never ended, the tasks queued
    behind it hung (with a timeout, they ended in TaskTimeoutError)."""
    runners: list[Any] = [functools.partial(tasks.raise_unprintable, picklable)]
    runners += [functools.partial(tasks.identity, i) for i in range(1, 5)]
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=8) as executor:
        ends = await run_all(executor, runners, timeout=20)
        check_final(ends, range(1, 5))
        error = ends[0].error
        if picklable:
            assert type(error) is tasks.UnprintableError
            assert isinstance(error.__cause__, RemoteTraceback)
            # Python 3.10's traceback module says "<unprintable ... object>" instead.
            assert any(
                f"UnprintableError: {text}" in error.__cause__.text
                for text in ("<exception str() failed>", "<unprintable UnprintableError object>")
            )
        else:
            assert isinstance(error, TaskPicklingError), repr(error)
            assert str(error) == (
                "task 0 raised _process_tasks.UnprintableUnpicklableError: <unprintable "
                "UnprintableUnpicklableError: str() raised RuntimeError> -- and that "
                "exception could not be pickled: cannot pickle UnprintableUnpicklableError "
                "object: no pickling either"
            )
        assert executor.statistics().workers_lost == 0
        assert await executor.run(tasks.identity, 5) == 5


async def test_fix_sys_exit_in_a_task_is_its_error_at_every_stage_and_its_worker_lives() -> None:
    """Regression (issue 13, item 8): ``sys.exit`` in a task -- in its call, while its
    call was unpickled, while its result, a value or its exception was pickled --
    ended the worker, and the task in WorkerCrashedError ("exited with code 7"),
    losing the SystemExit and the stage. The worker catches it: the task fails with
    the SystemExit, or a TaskPicklingError that says ``called sys.exit(7)`` and where;
    the worker lives on."""
    runners: list[Any] = [
        functools.partial(tasks.die, "sys.exit"),
        functools.partial(tasks.aexit, 5),
        functools.partial(tasks.identity, tasks.DiesWhenUnpickled("sys.exit")),
        functools.partial(tasks.make_dies_when_pickled, "sys.exit"),
        functools.partial(tasks.yields_dies_when_pickled, "sys.exit"),
        functools.partial(tasks.raise_error_dies_when_pickled, "sys.exit"),
        functools.partial(tasks.identity, 6),
        functools.partial(tasks.identity, 7),
    ]
    async with assert_no_leaks(), ProcessExecutor(2, prefetch=4) as executor:
        pids = set(executor.pids)
        ends = await run_all(executor, runners)
        check_final(ends, [6, 7])
        for task_id, code, where in [(0, 7, "in die"), (1, 5, "in aexit")]:
            error = ends[task_id].error
            assert type(error) is SystemExit and error.code == code, repr(error)
            assert isinstance(error.__cause__, RemoteTraceback)
            assert where in error.__cause__.text
        expected = {
            2: "the task arguments could not be unpickled in the worker: "
            "unpickling it called sys.exit(7)",
            3: "the task's result could not be pickled: cannot pickle DiesWhenPickled "
            "object: pickling it called sys.exit(7)",
            4: "a value the task yielded could not be pickled: cannot pickle "
            "DiesWhenPickled object: pickling it called sys.exit(7)",
            5: "task 5 raised _process_tasks.ErrorDiesWhenPickled: sys.exit -- and that "
            "exception could not be pickled: pickling it called sys.exit(7)",
        }
        for task_id, text in expected.items():
            error = ends[task_id].error
            assert isinstance(error, TaskPicklingError), repr(error)
            assert str(error) == text
        assert set(executor.pids) == pids
        assert executor.statistics().workers_lost == 0


@pytest.mark.parametrize("how", ["exception", "sys.exit"])
async def test_fix_an_exception_that_cannot_be_unpickled_in_the_parent_says_why(how: str) -> None:
    """Regression (issue 13, item 8): it arrived as ``RemoteTaskError(type: text)``,
    the unpickling failure only in ``__context__``; the message now says it."""
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        with pytest.raises(RemoteTaskError) as info:
            await executor.run(tasks.raise_error_dies_when_unpickled, how)
        assert await executor.run(tasks.identity, 1) == 1
    error = info.value
    reason = {
        "exception": "ValueError: exception in the worker",
        "sys.exit": "unpickling it called sys.exit(7)",
    }[how]
    assert str(error) == (
        f"_process_tasks.ErrorDiesWhenUnpickled: dies with {how} when unpickled -- and "
        f"that exception could not be unpickled in the parent: {reason}"
    )
    assert error.reason == reason
    assert isinstance(error.__cause__, RemoteTraceback)
    assert type(error.__context__) is (ValueError if how == "exception" else SystemExit)
