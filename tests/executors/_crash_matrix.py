"""The crash matrix's machinery: the cases, the contract they check, and the executors
they run on. ``test_crash_matrix.py`` parametrizes it over the start methods (spawn's
cases marked ``stress``).

Every case runs five tasks through a runner -- four innocent ones and, second, the
faulty one, so that with two workers and ``prefetch=2`` one innocent task waits in the
faulty task's worker behind it, and one waits in the runner for capacity -- and asks
the whole contract:

- the run ends (each case under a timeout far above its normal time);
- every task ends in exactly one terminal envelope (FINAL or ERROR), its last;
- the faulty task's error names what failed (see :func:`check_faulty`);
- the innocent tasks are FINAL with their values;
- all capacity is back (the runner's source and the executor's);
- the pool runs another task afterwards;
- after ``aclose()`` no worker process, zombie or fd is left.

Axes: **stage** (:data:`STAGES`) x **failure** (``_crash_tasks.FAILURES``) x **start
method** (forkserver, spawn, fork). A process death (``os._exit``, SIGKILL, segfault)
in a stage that runs in the parent would end the test process itself, which no
executor survives: those cells are not generated.

Cases that raise and kill no worker share one executor per start method for the
module (:class:`_Pools`); cases that may kill a worker (a death, or ``sys.exit``) get a
fresh executor each, under :func:`~pullpush.testing.assert_no_leaks`.

Translated from CPython's ``Lib/test/test_concurrent_futures/test_deadlock.py`` and
loky's ``tests/test_reusable_executor.py`` (crash at pickling, unpickling, running,
pickling and unpickling the result; crash at the call item's collection; crash with
big data; crash while shutting down; many pickling failures queued), plus what those
suites cannot express: streamed values, exceptions that fail to cross, ``__str__``
raising, ``BaseException`` subclasses, and the tasks around the faulty one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import _crash_tasks as ct
import pytest
import uvloop

from pullpush import (
    CapacitySource,
    EnvelopeType,
    ExecutorClosedError,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    RemoteTaskError,
    RemoteTraceback,
    TaskPicklingError,
    TaskProgressEnvelope,
    WorkerCrashedError,
)
from pullpush.testing import assert_no_leaks, collect, settle

LOOP_OF = {"forkserver": "uvloop", "spawn": "asyncio", "fork": "asyncio"}
"""The caller's event loop per start method: both kinds are covered, each case once."""

CASE_TIMEOUT = float(os.environ.get("PULLPUSH_CRASH_CASE_TIMEOUT", "20"))
"""Seconds a case may take before it counts as hung (a case takes about one)."""
CLOSE_TIMEOUT = 15.0
"""Seconds ``aclose()`` may take (its graces are well under a second here)."""
TEST_TIMEOUT = int(2 * CASE_TIMEOUT + 3 * CLOSE_TIMEOUT + 10)
"""pytest-timeout's limit per test: the last resort, above the two above."""

WORKERS = 2
FAULTY = 1
"""The faulty task's id: the second task started."""
INNOCENT = [0, 2, 3, 4]

PARENT_STAGES = ("pickle call", "unpickle result", "unpickle exception", "unpickle value")
"""Stages that run in the caller's process."""
STAGES = (
    "pickle call",  # the runner's arguments, pickled in the parent (submit)
    "unpickle call",  # ... unpickled in the worker
    "run",  # the task itself fails
    "pickle result",  # its result, pickled in the worker
    "unpickle result",  # ... unpickled in the parent
    "pickle exception",  # the exception the task raised, pickled in the worker
    "unpickle exception",  # ... unpickled in the parent
    "pickle value",  # an INTERMEDIATE value, pickled in the worker
    "unpickle value",  # ... unpickled in the parent
    "after yield",  # the task fails after one INTERMEDIATE value left the worker
    "after result",  # the worker fails once the result is pickled, before it is sent
)
DEATHS = {
    "os._exit": (ct.EXIT_CODE, None),
    "SIGKILL": (None, signal.SIGKILL),
    "segfault": (None, signal.SIGSEGV),
    "libc exit(0)": (0, None),  # probes only
}
"""Failures that end the worker process, and the (exitcode, signal) it must report."""
RAISED_TYPE = {
    "exception": ct.CrashMatrixError,
    "bad __str__": ct.BadStrError,
    "BaseException": ct.Abort,
}
"""Failures that raise, and the type raised."""
ONE_MAY_DIE = set(DEATHS) | {"sys.exit"}
"""Failures whose cases get an executor of their own (a worker may die)."""
RERUNS_MAX = 10
"""A task whose worker dies after it returned runs again, at most this many times."""


SLOW_METHODS = frozenset({"spawn"})
"""Start methods whose cases run in the stress suite: a spawned worker takes about a
second to start, and a third of the cases start a fresh pool (about 90 s in all)."""


def _marks(method: str) -> Any:
    return [pytest.mark.stress] if method in SLOW_METHODS else []


def method_params(methods: list[str]) -> list[Any]:
    """``methods`` as parameters, the slow ones marked ``stress``."""
    return [pytest.param(method, marks=_marks(method)) for method in methods]


def matrix_cells(methods: list[str]) -> list[Any]:
    cells = []
    for method in methods:
        for stage in STAGES:
            for how in ct.FAILURES:
                if stage in PARENT_STAGES and how in DEATHS:
                    continue  # would kill the test process itself
                cells.append(
                    pytest.param(
                        stage, how, method, id=f"{method}-{stage}-{how}", marks=_marks(method)
                    )
                )
    return cells


# -- the faulty task ---------------------------------------------------------------------------


def faulty_runner(stage: str, how: str, runs: Path) -> Any:
    """The task runner that fails at ``stage`` the way ``how`` says."""
    partial = functools.partial
    return {
        "pickle call": lambda: partial(ct.identity, ct.PickleBomb(how)),
        "unpickle call": lambda: partial(ct.identity, ct.UnpickleBomb(how)),
        "run": lambda: partial(ct.run_and_fail, how),
        "pickle result": lambda: partial(ct.return_pickle_bomb, how),
        "unpickle result": lambda: partial(ct.return_unpickle_bomb, how),
        "pickle exception": lambda: partial(ct.raise_pickle_bomb_error, how),
        "unpickle exception": lambda: partial(ct.raise_unpickle_bomb_error, how),
        "pickle value": lambda: partial(ct.yield_bomb, "pickle", how),
        "unpickle value": lambda: partial(ct.yield_bomb, "unpickle", how),
        "after yield": lambda: partial(ct.yield_then_fail, how),
        "after result": lambda: partial(ct.return_doomed, str(runs), how),
    }[stage]()


STAGE_NAMING: dict[str, tuple[tuple[type[BaseException], ...], tuple[str, ...]]] = {
    # stage: (the error's accepted types, words its message must hold)
    "pickle call": ((TaskPicklingError,), ("argument 0", "PickleBomb")),
    "unpickle call": ((TaskPicklingError,), ("unpickl",)),
    "pickle result": ((TaskPicklingError,), ("result", "PickleBomb")),
    "unpickle result": ((TaskPicklingError,), ("result", "UnpickleBomb", "unpickl")),
    "pickle exception": ((TaskPicklingError, RemoteTaskError), ("PickleBombError",)),
    "unpickle exception": ((TaskPicklingError, RemoteTaskError), ("UnpickleBombError",)),
    "pickle value": ((TaskPicklingError,), ("value", "PickleBomb")),
    "unpickle value": ((TaskPicklingError,), ("value", "UnpickleBomb", "unpickl")),
}
"""How the error of a failed crossing names what failed. Where the failure happened in
the parent, the error also names the failure (its type, or ``sys.exit(3)``), in its
message or in its ``__cause__``/``__context__`` chain; in the worker, only in the
message for ``unpickle call`` (the worker cannot tell which argument failed)."""

STREAMED = {
    "pickle value": ([], [0]),
    "unpickle value": ([], [0], [0, 2]),  # a value after the lost one may arrive
    "after yield": ([], [0]),
}
"""The INTERMEDIATE values the faulty task may deliver before its end; none elsewhere."""


def expected(stage: str, how: str) -> str:
    """The contract for the faulty task, in words (for failure messages)."""
    if stage == "after result":
        if how in DEATHS:
            return (
                "runs again a bounded number of times, then ERROR WorkerCrashedError "
                f"{DEATHS[how]} saying it was retried"
            )
        return "FINAL 'doomed' (the interpreter ignores what __del__ raises), run once"
    if how in DEATHS:
        return f"ERROR WorkerCrashedError(task {FAULTY}) with (exitcode, signal) {DEATHS[how]}"
    if how == "sys.exit":
        where = f"; a {STAGE_NAMING[stage][0][0].__name__}" if stage in PARENT_STAGES else ""
        return f"ERROR SystemExit({ct.EXIT_STATUS}) or an error naming sys.exit(3){where}"
    if stage in ("run", "after yield"):
        return f"ERROR {RAISED_TYPE[how].__name__} (the original) with the worker's traceback"
    types, words = STAGE_NAMING[stage]
    return f"ERROR {'/'.join(t.__name__ for t in types)} naming {words} and {how}"


def safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as failed:
        return f"<str() of {type(error).__name__} failed: {failed!r}>"


def describe(envelope: TaskProgressEnvelope) -> str:
    if envelope.type is EnvelopeType.ERROR:
        error = envelope.error
        assert error is not None
        return f"ERROR {type(error).__module__}.{type(error).__qualname__}: {safe_str(error)}"
    return f"{envelope.type} {envelope.value!r}"


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes and contexts."""
    seen: list[BaseException] = []
    todo = [error]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def names_exit(error: BaseException) -> bool:
    """Whether ``error`` is, or carries, ``SystemExit(3)``, or says ``sys.exit(3)``."""
    for link in chain(error):
        if isinstance(link, SystemExit) and link.code == ct.EXIT_STATUS:
            return True
        if f"sys.exit({ct.EXIT_STATUS})" in safe_str(link):
            return True
    return False


def names_failure(error: BaseException, how: str) -> bool:
    """Whether the message or the chain of ``error`` names the failure ``how``."""
    if how == "sys.exit":
        return names_exit(error)
    kind = RAISED_TYPE[how]
    return kind.__name__ in safe_str(error) or any(isinstance(e, kind) for e in chain(error))


def check_faulty(stage: str, how: str, envelopes: list[TaskProgressEnvelope], runs: int) -> None:
    """Check the faulty task's envelopes against the contract (:func:`expected`)."""
    end, values = envelopes[-1], [e.value for e in envelopes[:-1]]
    contract = f"expected {expected(stage, how)}; got {describe(end)}"
    allowed: tuple[list[Any], ...] = STREAMED.get(stage, ([],))
    assert values in allowed, f"INTERMEDIATE values {values}, expected one of {allowed}"
    if stage == "after result" and how not in DEATHS:
        assert (end.type, end.value) == (EnvelopeType.FINAL, "doomed"), contract
        assert runs == 1, f"ran {runs} times"
        return
    assert end.type is EnvelopeType.ERROR, contract
    error = end.error
    assert error is not None
    message = safe_str(error)
    if how in DEATHS:
        assert isinstance(error, WorkerCrashedError), contract
        assert error.task_id == FAULTY, contract
        assert (error.exitcode, error.signal) == DEATHS[how], contract
        if stage == "after result":
            assert re.search(r"retr|attempt", message, re.IGNORECASE), contract
            assert 2 <= runs <= RERUNS_MAX, f"ran {runs} times; {contract}"
        return
    if stage in ("run", "after yield") and how != "sys.exit":
        assert type(error) is RAISED_TYPE[how], contract
        assert isinstance(error.__cause__, RemoteTraceback), f"no worker traceback; {contract}"
        if how == "exception":
            assert "exception in the task" in message or "after the task yielded" in message
        return
    if how == "sys.exit" and stage not in PARENT_STAGES:
        assert names_exit(error), contract
        return
    types, words = STAGE_NAMING[stage]
    assert isinstance(error, types), contract
    missing = [w for w in words if w not in message]
    assert not missing, f"the message lacks {missing}; {contract}"
    if stage in PARENT_STAGES:
        assert names_failure(error, how), f"{how} is not named; {contract}"
    elif stage == "unpickle call" and how != "sys.exit":
        assert RAISED_TYPE[how].__name__ in message, f"{how} is not named; {contract}"


# -- one case ----------------------------------------------------------------------------------


async def crash_case(executor: ProcessExecutor, stage: str, how: str, tmp_path: Path) -> None:
    """Run the faulty task among innocent ones; check the whole contract."""
    runs_file = tmp_path / "runs"
    runners: list[Any] = [functools.partial(ct.innocent, i) for i in range(5)]
    runners[FAULTY] = faulty_runner(stage, how, runs_file)
    capacity = CapacitySource(4)
    runner = HierarchicalTaskPoolRunner(f"{stage} x {how}", runners, capacity, executor=executor)
    envelopes: list[TaskProgressEnvelope] = []

    async def consume() -> None:
        async for envelope in runner.run_tasks():
            envelopes.append(envelope)

    try:
        await within(consume())
    except AssertionError as hang:  # say what was seen, to tell one hang from another
        ended = {
            e.task_id: describe(e) for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE
        }
        raise AssertionError(
            f"{hang}; ended: {ended}; faulty task runs: {count_runs(runs_file)}; "
            f"{executor.statistics()}"
        ) from None
    by_task: dict[int, list[TaskProgressEnvelope]] = {}
    for envelope in envelopes:
        by_task.setdefault(envelope.task_id, []).append(envelope)
    assert sorted(by_task) == list(range(5)), f"tasks seen: {sorted(by_task)}"
    for task_id, own in by_task.items():
        ends = [e for e in own if e.type is not EnvelopeType.INTERMEDIATE]
        assert len(ends) == 1, f"task {task_id}: {[describe(e) for e in ends]}"
        assert own[-1] is ends[0], f"task {task_id}: envelopes after its end"
    for task_id in INNOCENT:
        end = by_task[task_id][-1]
        assert (end.type, end.value) == (EnvelopeType.FINAL, ("ok", task_id)), (
            f"innocent task {task_id}: {describe(end)}"
        )
    check_faulty(stage, how, by_task[FAULTY], count_runs(runs_file))
    await check_pool_whole(executor, capacity)


def count_runs(path: Path) -> int:
    """How many times the faulty task started (for those that record it)."""
    return len(path.read_text().split()) if path.exists() else 0


async def check_pool_whole(executor: ProcessExecutor, *capacities: CapacitySource) -> None:
    """All capacity is back, nothing is left in flight, and the pool runs a task."""
    await settle()
    for capacity in (*capacities, executor.capacity):
        assert (capacity.available, capacity.in_use) == (capacity.limit, 0), (
            f"capacity not back: {capacity!r}"
        )
    statistics = executor.statistics()
    assert (statistics.pending, statistics.in_flight) == (0, 0), statistics
    assert await executor.run(ct.identity, "after") == "after"


def new_executor(method: str, **options: Any) -> ProcessExecutor:
    settings: dict[str, Any] = {"prefetch": 2, "cancel_grace": 0.2, "kill_grace": 0.5}
    settings.update(options)
    workers = settings.pop("max_workers", WORKERS)
    return ProcessExecutor(workers, start_method=method, **settings)


async def close(executor: ProcessExecutor) -> None:
    """``aclose()``; if it hangs, kill its workers (by pid) and fail."""
    try:
        await asyncio.wait_for(asyncio.shield(executor.aclose()), CLOSE_TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        pids = executor.pids
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise AssertionError(
            f"aclose() did not end within {CLOSE_TIMEOUT} s; killed workers {pids}"
        ) from None


async def within(
    awaitable: Awaitable[None], what: str = "the run", timeout: float = CASE_TIMEOUT
) -> None:
    """Await ``awaitable`` for at most ``timeout`` seconds. On timeout, cancel
    it and give it a moment; a task that will not even end on cancellation (waiting
    for an end that never comes) is abandoned rather than waited for, so that a hang
    fails the case instead of the whole session."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        return task.result()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if task not in done:
        _abandoned.add(task)
    raise AssertionError(f"hung: {what} did not end within {timeout} s")


_abandoned: set[asyncio.Task[None]] = set()
"""Tasks that a hang left behind (kept referenced until their loop is closed)."""


def run_loop(main: Awaitable[None], kind: str) -> None:
    """Run ``main`` on a fresh loop of ``kind``, then close the loop; tasks left behind
    get a bounded moment to end after cancellation (unlike ``asyncio.run``)."""
    loop = (uvloop if kind == "uvloop" else asyncio).new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        abandon_loop(loop)


def abandon_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=2.0))
    closing = loop.create_task(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait({closing}, timeout=2.0))
    _abandoned.difference_update(asyncio.all_tasks(loop))
    loop.close()


def run_fresh(
    method: str, case: Callable[[ProcessExecutor], Awaitable[None]], **options: Any
) -> None:
    """Run ``case`` on an executor of its own, on a fresh loop; then close it and check
    that nothing is left."""

    async def body() -> None:
        async with assert_no_leaks():
            executor = new_executor(method, **options)
            failed = False
            try:
                await within(executor.start(), "start()")
                await within(case(executor), "the case", CASE_TIMEOUT + CLOSE_TIMEOUT)
            except BaseException:
                failed = True
                raise
            finally:
                try:
                    await close(executor)
                except AssertionError:
                    if not failed:
                        raise

    run_loop(body(), LOOP_OF[method])


class _Pools:
    """One executor per start method, each on a loop of its own, shared by the cases
    that kill no worker. A case that fails discards its executor (it may have left it
    damaged); the next case starts a new one."""

    def __init__(self) -> None:
        self.loops: dict[str, asyncio.AbstractEventLoop] = {}
        self.executors: dict[str, ProcessExecutor] = {}

    def run_shared(self, method: str, case: Callable[[ProcessExecutor], Awaitable[None]]) -> None:
        loop = self.loops.get(method)
        if loop is None:
            factory = (
                uvloop.new_event_loop if LOOP_OF[method] == "uvloop" else asyncio.new_event_loop
            )
            loop = self.loops[method] = factory()
        executor = self.executors.get(method)
        if executor is None:
            executor = self.executors[method] = new_executor(method)
            loop.run_until_complete(within(executor.start(), "start()"))
        lost = executor.statistics().workers_lost

        async def checked() -> None:
            await within(case(executor), "the case", CASE_TIMEOUT + CLOSE_TIMEOUT)
            assert executor.statistics().workers_lost == lost, "a raised exception cost a worker"

        try:
            loop.run_until_complete(checked())
        except BaseException:
            self.discard(method)
            raise

    def discard(self, method: str) -> None:
        executor = self.executors.pop(method, None)
        loop = self.loops.pop(method)
        try:
            if executor is not None:
                with contextlib.suppress(AssertionError):
                    loop.run_until_complete(close(executor))
        finally:
            abandon_loop(loop)

    def close_all(self) -> None:
        errors = []
        for method in list(self.loops):
            executor, loop = self.executors.pop(method, None), self.loops[method]
            if executor is not None:
                try:
                    loop.run_until_complete(close(executor))
                except AssertionError as error:
                    errors.append(error)
            self.discard(method)
        if errors:
            raise errors[0]


def shared_pools() -> Iterator[_Pools]:
    """The shared executors; at the end of the module, closing them leaves nothing."""
    uvloop.new_event_loop().close()  # libuv keeps one pipe pair open for good
    pools = _Pools()
    checker = assert_no_leaks()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(checker.__aenter__())
        yield pools
        pools.close_all()
        loop.run_until_complete(checker.__aexit__(None, None, None))
    finally:
        loop.close()


def run_matrix_cell(pools: _Pools, stage: str, how: str, method: str, tmp_path: Path) -> None:
    def case(executor: ProcessExecutor) -> Awaitable[None]:
        return crash_case(executor, stage, how, tmp_path)

    if how in ONE_MAY_DIE:
        run_fresh(method, case)
    else:
        pools.run_shared(method, case)


# -- probes beyond the matrix (test_crash_matrix.py parametrizes them) -------------------------


def case_a_worker_that_exits_with_status_0_mid_task_is_a_crash(
    pools: _Pools, stage: str, method: str, tmp_path: Path
) -> None:
    """loky's ``c_exit``: C code calling ``exit(0)`` ends the worker "successfully" while
    the task runs; the task still fails with WorkerCrashedError (exit code 0)."""
    run_matrix_cell(pools, stage, "libc exit(0)", method, tmp_path)


def case_workers_crash_with_large_arguments_in_their_pipes(method: str) -> None:
    """CPython gh-94777: workers die while megabytes of arguments for them are in the
    pipe, or being written to it. Each faulty task fails, each other one completes."""
    data = b"d" * (4 << 20)
    bad = {1, 3, 5}

    async def case(executor: ProcessExecutor) -> None:
        runners = [
            functools.partial(ct.fail_with_data, data, "segfault")
            if i in bad
            else functools.partial(ct.echo_size, data)
            for i in range(8)
        ]
        capacity = CapacitySource(8)
        runner = HierarchicalTaskPoolRunner("big", runners, capacity, executor=executor)
        envelopes = await collect(runner.run_tasks())
        assert sorted(e.task_id for e in envelopes) == list(range(8))
        for envelope in envelopes:
            if envelope.task_id in bad:
                error = envelope.error
                assert isinstance(error, WorkerCrashedError), describe(envelope)
                assert (error.task_id, error.signal) == (envelope.task_id, signal.SIGSEGV)
            else:
                assert (envelope.type, envelope.value) == (EnvelopeType.FINAL, len(data))
        await check_pool_whole(executor, capacity)

    run_fresh(method, case)


def case_a_busy_worker_killed_from_outside(method: str) -> None:
    """loky's ``kill_friend``: SIGKILL from another process fails the task that worker
    ran (signal 9), and nothing else; the tasks queued on it run elsewhere."""

    async def case(executor: ProcessExecutor) -> None:
        runners = [functools.partial(ct.report_pid_then_sleep, 2.0) for _ in range(2)]
        runners += [functools.partial(ct.innocent, i) for i in range(2, 6)]
        capacity = CapacitySource(6)
        runner = HierarchicalTaskPoolRunner("kill", runners, capacity, executor=executor)
        envelopes, victim = [], None
        async for envelope in runner.run_tasks():
            envelopes.append(envelope)
            if envelope.task_id == 0 and envelope.type is EnvelopeType.INTERMEDIATE:
                victim = envelope.value  # task 0 runs in this worker now: kill it
                os.kill(victim, signal.SIGKILL)
        ends = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
        assert sorted(ends) == list(range(6)) and len(ends) == len(envelopes) - 2
        error = ends[0].error
        assert isinstance(error, WorkerCrashedError), describe(ends[0])
        assert (error.pid, error.signal, error.task_id) == (victim, signal.SIGKILL, 0)
        assert ends[1].value == "slept", describe(ends[1])
        for i in range(2, 6):
            assert ends[i].value == ("ok", i), describe(ends[i])
        await check_pool_whole(executor, capacity)

    run_fresh(method, case)


def case_many_arguments_that_cannot_be_pickled_then_good_ones(pools: _Pools, method: str) -> None:
    """loky's ``test_queue_full_deadlock``: a hundred tasks whose arguments cannot be
    pickled, then a hundred good ones; no queue fills, every task ends."""

    async def case(executor: ProcessExecutor) -> None:
        bad = [functools.partial(ct.noop_arg, ct.PickleBomb("exception")) for _ in range(100)]
        good = [functools.partial(ct.noop_arg, i) for i in range(100)]
        capacity = CapacitySource(8)
        runner = HierarchicalTaskPoolRunner("queue", bad + good, capacity, executor=executor)
        envelopes = await collect(runner.run_tasks())
        assert sorted(e.task_id for e in envelopes) == list(range(200))
        for envelope in envelopes:
            if envelope.task_id < 100:
                assert isinstance(envelope.error, TaskPicklingError), describe(envelope)
            else:
                assert (envelope.type, envelope.value) == (EnvelopeType.FINAL, True)
        await check_pool_whole(executor, capacity)

    pools.run_shared(method, case)


class _Recorder:
    """A ``TaskEvents`` that keeps every event of one task."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.events.append(("INTERMEDIATE", value))

    def task_final(self, task_id: int, value: Any) -> None:
        self.events.append(("FINAL", value))

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.events.append(("ERROR", error))

    def ends(self) -> list[tuple[str, Any]]:
        return [e for e in self.events if e[0] != "INTERMEDIATE"]


def case_aclose_while_a_worker_crashes(method: str, how: str) -> None:
    """CPython ``test_shutdown_deadlock``: ``aclose()`` right after submitting a task
    that kills its worker a moment later. The close ends; the task ends once, with
    the crash or with ExecutorClosedError; another task running then ends once too."""

    async def case(executor: ProcessExecutor) -> None:
        doomed, bystander = _Recorder(), _Recorder()
        executor.submit(0, functools.partial(ct.fail_later, how, 0.1), doomed)
        executor.submit(1, functools.partial(ct.async_sleep_then, "late", 0.3), bystander)
        await asyncio.sleep(0.05)
        await close(executor)
        for recorder in (doomed, bystander):
            ends = recorder.ends()
            assert len(ends) == 1, ends
            assert ends[0][0] == "ERROR", ends
            assert isinstance(ends[0][1], (WorkerCrashedError, ExecutorClosedError)), ends

    run_fresh(method, case)


def case_aclose_right_after_a_pickling_failure(method: str) -> None:
    """CPython ``test_shutdown_deadlock_pickle`` (bpo-39104): a task whose arguments
    cannot be pickled, then ``aclose()`` at once; the task fails, the close ends."""

    async def case(executor: ProcessExecutor) -> None:
        assert await executor.run(ct.identity, 42) == 42
        failing = _Recorder()
        executor.submit(0, functools.partial(ct.identity, ct.PickleBomb("exception")), failing)
        await close(executor)
        ends = failing.ends()
        assert len(ends) == 1 and isinstance(ends[0][1], TaskPicklingError), ends

    run_fresh(method, case)


def case_a_dying_worker_fails_the_task_running_beside_the_faulty_one(method: str) -> None:
    """With ``tasks_per_worker=2``, a death fails both tasks the worker was running (the
    other one did nothing wrong, but it ran there), each exactly once and as a crash;
    a task queued behind them runs on the replacement."""

    async def case(executor: ProcessExecutor) -> None:
        runners = [
            functools.partial(ct.async_sleep_then, "beside", 2.0),
            functools.partial(ct.fail_later, "os._exit", 0.3),
            functools.partial(ct.innocent, 2),
        ]
        capacity = CapacitySource(3)
        runner = HierarchicalTaskPoolRunner("beside", runners, capacity, executor=executor)
        envelopes = await collect(runner.run_tasks())
        ends = {e.task_id: e for e in envelopes}
        assert sorted(e.task_id for e in envelopes) == [0, 1, 2]
        for task_id in (0, 1):
            error = ends[task_id].error
            assert isinstance(error, WorkerCrashedError), describe(ends[task_id])
            assert (error.task_id, error.exitcode) == (task_id, ct.EXIT_CODE)
        assert ends[2].value == ("ok", 2), describe(ends[2])
        await check_pool_whole(executor, capacity)

    run_fresh(method, case, max_workers=1, tasks_per_worker=2, prefetch=1)
