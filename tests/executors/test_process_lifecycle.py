"""The process executor's life: starting (and a cancelled start), worker deaths seen
whatever other processes hold, the death of the parent, and use from several event
loops (issue 13). Every test runs on each start method and leaves no worker process,
zombie or fd behind."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Coroutine
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
    TaskTimeoutError,
    WorkerCrashedError,
)
from pullpush.executors.process import _forks
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(tasks)

pytestmark = pytest.mark.timeout(90)

METHODS = ["forkserver", "spawn", "fork"]


def _zombies() -> set[int]:
    """This process's children that exited and were not reaped."""
    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                found.add(child.pid)
    return found


@contextlib.asynccontextmanager
async def no_leaks() -> AsyncIterator[None]:
    """No child process, zombie or fd left by the block."""
    zombies = _zombies()
    async with assert_no_leaks():
        yield
    assert not _zombies() - zombies, "zombies left"


class _Recorder:
    """A TaskEvents that keeps a task's values and end."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.end: tuple[str, Any] | None = None

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.values.append(value)

    def task_final(self, task_id: int, value: Any) -> None:
        self.end = ("FINAL", value)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.end = ("ERROR", error)


async def _until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- item 1: a worker's death is seen, whatever its siblings hold ---------------------------------


async def _check_fds_of_each_worker(executor: ProcessExecutor) -> None:
    """Each worker holds its own two pipe ends, and no other fd of the pool's."""
    seen: dict[int, list[str]] = {}
    for _ in range(10):  # spread over the workers (prefetch=0: one task each)
        seen.update(await asyncio.gather(*(executor.run(tasks.open_fds) for _ in range(8))))
        if len(seen) == executor.max_workers:
            break
    workers = {w.pid: w for w in executor._workers}
    assert set(seen) <= set(workers)

    def inode(fd: int) -> str:
        return f"pipe:[{os.fstat(fd).st_ino}]"

    pipes = {pid: {inode(c.fileno()) for c in w.connections} for pid, w in workers.items()}
    for pid, targets in seen.items():
        foreign = set().union(*(p for other, p in pipes.items() if other != pid))
        assert not foreign & set(targets), f"worker {pid} holds another worker's pipes"
        own = [t for t in targets if t in pipes[pid]]
        assert sorted(own) == sorted(pipes[pid]), "a worker holds its two ends only"
        assert not [t for t in targets if "pidfd" in t], "a worker holds a pidfd"


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_a_worker_holds_no_fd_of_another_worker(start_method: str) -> None:
    """Regression (issue 13): ``fork`` workers started at the same time from threads
    inherited each other's pipe ends (and the parent's ends of their own pipes), so
    a worker's death (its sentinel, its result pipe's EOF) went unseen while a sibling
    lived. Each worker now holds its own two pipe ends and nothing else of the pool's,
    replacements (forked while every other worker's fds are open) included."""
    async with no_leaks(), ProcessExecutor(4, start_method=start_method, prefetch=0) as executor:
        await _check_fds_of_each_worker(executor)
        crashes = [executor.run(tasks.die, "os._exit") for _ in range(2)]
        outcomes = await asyncio.gather(*crashes, return_exceptions=True)
        assert all(isinstance(o, WorkerCrashedError) for o in outcomes), outcomes
        await _until(lambda: len(executor.pids) == 4)
        await _check_fds_of_each_worker(executor)


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_a_worker_death_is_seen_while_its_siblings_live(start_method: str) -> None:
    """Regression (issue 13): with ``fork``, about half of the runs in which a worker
    died hung for good (its death went unseen while a sibling lived). Now each
    worker's pidfd is watched, which no other process can hold up."""
    async with no_leaks(), ProcessExecutor(4, start_method=start_method, prefetch=0) as executor:
        for _ in range(3):
            runners: list[Any] = [functools.partial(tasks.doze, i, 1.0) for i in range(4)]
            runners[2] = functools.partial(tasks.die, "os._exit")
            runner = HierarchicalTaskPoolRunner(
                "siblings", runners, CapacitySource(4), executor=executor
            )
            envelopes = await asyncio.wait_for(collect(runner.run_tasks()), 30)
            ends = {e.task_id: e for e in envelopes}
            assert len(envelopes) == len(ends) == 4
            error = ends[2].error
            assert isinstance(error, WorkerCrashedError) and error.exitcode == 7, repr(error)
            assert [(ends[i].type, ends[i].value) for i in (0, 1, 3)] == [
                (EnvelopeType.FINAL, i) for i in (0, 1, 3)
            ]
            assert executor.capacity.available == executor.capacity.limit
        assert await executor.run(tasks.identity, "after") == "after"


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_a_cancelled_task_on_a_worker_whose_death_went_unseen_ends(
    start_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13): a task whose worker died unseen could not be cancelled
    (``wait_for`` hung too): its worker was sent SIGTERM, then SIGKILL, and nothing
    more happened. A worker sent SIGKILL is now looked at until it is gone. Here no
    death is seen but that way (its pidfd and sentinel are not watched)."""
    monkeypatch.setattr(ProcessExecutor, "_watch_exit", lambda self, worker: None)
    async with no_leaks():
        executor = ProcessExecutor(1, start_method=start_method, cancel_grace=0.05, kill_grace=0.05)
        async with executor:
            recorder = _Recorder()
            handle = executor.submit(0, tasks.started_then_waits, recorder)
            await _until(lambda: recorder.values == ["started"])
            os.kill(executor.pids[0], signal.SIGKILL)
            await asyncio.sleep(0.2)  # dead, unseen
            handle.cancel(TaskTimeoutError("gave up"))
            await _until(lambda: recorder.end is not None)
            assert recorder.end is not None and recorder.end[0] == "ERROR"
            assert isinstance(recorder.end[1], TaskTimeoutError)
            assert executor.capacity.available == executor.capacity.limit
            # wait_for ends too, and the replacement works.
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await asyncio.wait_for(executor.run(tasks.sleep_forever), 0.5)
            assert await executor.run(tasks.identity, 3) == 3


# -- item 7: a cancelled start ------------------------------------------------------------------


@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each worker's start (on its thread) takes 0.1 s before the fork and 0.2 s
    after: a start can be cancelled before or after its processes exist. Yields the
    pids started (appended on the thread)."""
    started: list[int] = []
    original = _forks.start_process

    def slow(process: Any, *args: Any) -> None:
        time.sleep(0.1)
        original(process, *args)
        started.append(process.pid)
        time.sleep(0.2)

    monkeypatch.setattr(_forks, "start_process", slow)
    return started


def _gone(pid: int) -> bool:
    """Exited and reaped (by this process, or by the forkserver)."""
    return not psutil.pid_exists(pid)


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_a_cancelled_start_is_undone_and_the_executor_starts_again(
    start_method: str, slow_start: list[int]
) -> None:
    """Regression (issue 13): a cancelled ``start()`` broke the executor for good
    (every later run raised a bare CancelledError), and with ``spawn`` left zombies.
    Now the start is undone before the cancellation is raised: every worker it
    started is killed and reaped; the next call starts the executor afresh."""
    async with no_leaks():
        executor = ProcessExecutor(2, start_method=start_method)
        for delay in (0.0, 0.05, 0.2):  # before the forks, during them, after them
            starting = asyncio.ensure_future(executor.start())
            await asyncio.sleep(delay)
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
            assert not executor.started and executor.pids == []
            assert all(_gone(pid) for pid in slow_start), "a worker of it is left"
        assert slow_start, "no start got as far as a process"
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(executor.run(tasks.identity, 1), 0.2)
        assert await executor.run(tasks.identity, 2) == 2
        assert executor.statistics().workers == 2
        await executor.aclose()


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_a_start_waited_for_by_another_call_starts_afresh_when_cancelled(
    start_method: str, slow_start: list[int]
) -> None:
    """Another call waiting for the start that was cancelled (a second runner, or a
    run submitted meanwhile) starts the executor afresh rather than failing."""
    async with no_leaks():
        executor = ProcessExecutor(2, start_method=start_method)
        starting = asyncio.ensure_future(executor.start())
        await _until(lambda: len(slow_start) == 2)  # both forked, neither start done
        waiting = asyncio.ensure_future(executor.run(tasks.identity, "queued"))
        await asyncio.sleep(0)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert all(_gone(pid) for pid in slow_start[:2])
        assert await asyncio.wait_for(waiting, 30) == "queued"
        assert len(slow_start) == 4
        await executor.aclose()


# -- item 9: one executor, several loops -----------------------------------------------------------


def _run_in_new_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_another_loop_gets_a_clear_error_and_closes_an_orphaned_executor(
    start_method: str,
) -> None:
    """Regression (issue 13): reused in a second ``asyncio.run``, an executor hung for
    good (spawn) or raised 'Event loop is closed' (forkserver). Now every use from
    another loop raises at once, and once its loop is closed, ``aclose()`` from any
    loop kills and reaps its workers."""
    async with no_leaks():
        executor = ProcessExecutor(2, start_method=start_method)

        async def first() -> Any:
            await executor.start()
            return await executor.run(tasks.identity, 1)

        assert await asyncio.to_thread(_run_in_new_loop, first()) == 1  # its loop, closed
        # Still open, its workers live on (they used to die with the threads of the
        # loop's default executor, which had started them: a parent-death signal
        # follows the thread that forked).
        pids = executor.pids
        assert len(pids) == 2
        await asyncio.sleep(0.3)
        assert all(_status(pid) not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) for pid in pids)
        with pytest.raises(RuntimeError, match="another event loop than start"):
            await executor.run(tasks.identity, 2)
        with pytest.raises(RuntimeError, match="another event loop than start"):
            executor.submit(0, functools.partial(tasks.identity, 3), _Recorder())
        await executor.aclose()
        assert executor.closed


@pytest.mark.parametrize("start_method", METHODS)
async def test_fix_another_live_loop_gets_a_clear_error_and_the_executor_stays_usable(
    start_method: str,
) -> None:
    """Regression (issue 13): from a second live loop, a result arrived only when
    something else woke the executor's loop; closing from it leaked fds. Now both raise
    at once, and the executor goes on working (and closes) from its own loop."""
    async with no_leaks():
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever)
        thread.start()

        async def on_its_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))

        try:
            executor = ProcessExecutor(2, start_method=start_method)
            assert await on_its_loop(executor.run(tasks.identity, 1)) == 1
            with pytest.raises(RuntimeError, match="another event loop than start"):
                await executor.run(tasks.identity, 2)
            with pytest.raises(RuntimeError, match="still open: close it from that loop"):
                await executor.aclose()
            assert not executor.closed
            assert await on_its_loop(executor.run(tasks.identity, 3)) == 3
            await on_its_loop(executor.aclose())
            assert executor.closed
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            loop.close()


ORPHAN = textwrap.dedent(
    """
    import asyncio, sys
    import _process_tasks as tasks
    from pullpush import ProcessExecutor

    executor = ProcessExecutor(2, start_method=sys.argv[1])

    async def first():
        await executor.start()
        print(" ".join(map(str, executor.pids)), flush=True)

    async def second():
        try:
            await executor.run(tasks.identity, 1)
        except RuntimeError as error:
            print(error, flush=True)

    asyncio.run(first())
    asyncio.run(second())
    # Never closed: the interpreter's exit kills the workers.
    """
)


@pytest.mark.parametrize("start_method", METHODS)
def test_fix_an_executor_left_on_a_closed_loop_is_killed_at_exit(start_method: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(tasks.__file__)}
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN, start_method],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    pids = [int(p) for p in lines[0].split()]
    assert len(pids) == 2 and "another event loop than start" in lines[1]
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and _status(p) != psutil.STATUS_ZOMBIE]
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert not alive, f"workers {alive} outlived their process"


def _status(pid: int) -> str:
    try:
        return str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return psutil.STATUS_DEAD
