"""``ProcessExecutor``: its public API and lifecycle (start, close, break) and submit
(a task's end and cancellation: ``_endings``). How a task travels: see the package
docstring (``pullpush.executors.process``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.process
import os
import signal
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ..._exceptions import (
    BrokenExecutorError,
    ExecutorClosedError,
    NotWaitableError,
    TaskPicklingError,
    WorkerCrashedError,
)
from ..._util import check_int, check_seconds
from ...capacity import CapacitySource
from ...runners._waitable import Waitable
from .._base import Executor, TaskEvents, TaskHandle, TaskRunner, as_task_events
from . import _forks, _shm
from . import _pickling as pickling
from . import _protocol as wire
from ._calls import _CallsMixin, _runner_kind
from ._dispatch import _DispatchMixin
from ._endings import _EndingsMixin
from ._handle import _ProcTask
from ._results import _ResultsMixin
from ._spawn import _DEAD, _READY, _STOPPING, _SpawnMixin, _to_the_end, _wait_for_exits, _Worker

__all__ = ["ProcessExecutor", "ProcessExecutorStatistics"]


@dataclasses.dataclass(frozen=True)
class ProcessExecutorStatistics:
    """A snapshot of a :class:`ProcessExecutor`."""

    workers: int
    """Worker processes alive (or starting)."""
    pending: int
    """Tasks waiting in the parent for a worker with room."""
    in_flight: int
    """Tasks sent to a worker and not ended."""
    prefetch: int
    """Tasks each worker may hold beyond those it runs."""
    functions_cached: int
    """Distinct functions pickled once and sent by id."""
    workers_started: int
    """Worker processes started so far, replacements included."""
    workers_lost: int
    """Workers that died or were replaced so far."""


class ProcessExecutor(
    _ResultsMixin, _SpawnMixin, _DispatchMixin, _EndingsMixin, _CallsMixin, Executor
):
    """Run task runners in a pool of worker processes, each running its own uvloop.

    Runners travel by cloudpickle (lambdas and closures work; use
    ``functools.partial(f, data)`` to send ``f`` once per worker rather than once per
    task), values and exceptions by pickle protocol 5. Exceptions keep their type and
    carry the worker's traceback as ``__cause__`` (:class:`RemoteTraceback`).

    Args:
        max_workers: worker processes (default: the CPUs this process may use).
        start_method: ``"forkserver"`` (default), ``"spawn"`` or ``"fork"``. With
            ``"forkserver"``, the server preloads pullpush's worker module if it
            starts with this executor's first worker; a server that another pool
            started earlier in this process keeps its own list, and each worker then
            imports pullpush itself (measured: about 300 ms instead of 60 ms to the
            first result, 18 instead of 10 MiB unique memory per worker). Start a
            ProcessExecutor before other forkserver pools, or call
            ``multiprocessing.set_forkserver_preload`` with
            ``"pullpush.executors.process._worker"`` yourself.
        tasks_per_worker: tasks a worker runs at once (async runners share its loop;
            sync ones run one after another).
        max_tasks_per_worker: replace a worker (gracefully) after this many tasks.
        max_worker_memory: replace a worker whose resident memory exceeds this many
            bytes (checked after its tasks, at most every 0.1 s).
        initializer: called with ``initargs`` in each worker before its first task.
        initargs: arguments for ``initializer``.
        prefetch: tasks queued in each worker beyond the ones it runs, so its pipe
            never idles; ``"auto"`` (default) adapts it to the tasks' durations (about
            4 ms of queued work per worker, up to 256 tasks; none once tasks take
            longer than that). Beyond one ahead, a worker holds at most 4 MiB of calls (pickled
            runners and arguments with their out-of-band buffers), and with
            ``"auto"`` only tasks of a kind (function) seen to end, within the 4 ms
            by that kind's durations: a prefetch learned on short tasks does not
            queue large or long ones. A runner's tasks queue this way behind its
            running ones holding no capacity (the capacity hand-off, see
            :meth:`successor_room`), so with ``"auto"`` one goes ahead of even a
            long task; ``prefetch=0`` queues none.
        credit_window: INTERMEDIATE envelopes a task may send before the consumer
            reads them; then it pauses (flow control; nothing is dropped). The
            default, 1024, covers the pipe's round trip (a batch of half the window
            is read while the next is computed) at over a million envelopes a
            second on a busy machine. A large value (a ``str``, ``bytes`` or
            pickled value of n bytes) takes ``1 + n // 16384`` credits, so what a
            task has waiting in the parent stays within about ``credit_window``
            values and ``credit_window * 16`` KiB (16 MiB by default), plus the
            batch in which the window filled (at most half a window, or about 2 ms
            of the task's output).
        cancel_grace: seconds a cancelled task gets to end in its worker before the
            worker is sent SIGTERM.
        kill_grace: seconds between SIGTERM and SIGKILL.
        measure_memory: measure each task's peak resident memory in its worker
            (Linux) and report it to the submitter as ``{"memory_mb": peak}``
            through ``TaskEvents.task_resources``; a
            :class:`~pullpush.ScheduledTaskPoolRunner` then reconciles the task's
            ``memory_mb`` cost with it. The peak is the worker process's, baseline
            included (about 20 MiB), so with ``tasks_per_worker > 1`` it covers every
            task running there at the time.
        max_waiting: waitable tasks (:func:`~pullpush.waitable`) a worker may host
            while they wait in ``receive()`` (default 64). A waiting task stays
            resident in its worker's loop (awaiting a future: no CPU) but counts
            against none of its ``tasks_per_worker`` running slots, and the runner
            gives its unit of :attr:`capacity` back; a task that would wait beyond
            ``max_waiting`` gets :class:`~pullpush.WaitLimitError` from ``receive``.
            Messages travel on the worker's call pipe; a worker that dies fails its
            waiting tasks with :class:`WorkerCrashedError`, as its running ones.
            (``receive_blocking`` is refused: a sync runner would block the loop
            that reads its messages.)
        max_crash_retries: times a plain task runs again when its worker died after
            running it but before sending its result (at least once: the result was
            lost; a task that streamed values never runs again). It runs again alone
            in its worker, so that another such death is its own; one more than this
            fails it with :class:`WorkerCrashedError` (``retries`` says how many).
            ``0`` fails it at the first, with the tasks that had run in that worker
            since its last output.

    The running slots (``max_workers * tasks_per_worker``) are the executor's
    :attr:`capacity`: a runner holds one, with a unit of its own capacity, per task
    that runs (SPEC 3), whatever the prefetch. The runner's further tasks are queued
    in the workers behind its running ones (``submit(after=)``), holding nothing
    until their predecessor ends and hands its slot and unit over.

    The executor is bound to the event loop its :meth:`start` ran on: a call from
    another loop raises ``RuntimeError`` (but :meth:`aclose` once that loop is
    closed). A cancelled start is undone, and the next call starts afresh.
    """

    name = "process"
    _warn_unclosed = True
    queues_successors = True

    def _abandon(self) -> None:
        """Collected unclosed (after the ResourceWarning): kill the workers."""
        self._kill_all()

    _restartable = True

    reports_starts = True
    runs_waitables = True

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        start_method: str = "forkserver",
        tasks_per_worker: int = 1,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        prefetch: int | str = "auto",
        credit_window: int = 1024,
        cancel_grace: float = 0.5,
        kill_grace: float = 1.0,
        measure_memory: bool = False,
        max_crash_retries: int = 2,
        max_waiting: int = 64,
    ) -> None:
        super().__init__()
        self.max_workers = (
            _forks.usable_cpus()
            if max_workers is None
            else check_int("max_workers", max_workers, minimum=1)
        )
        methods = multiprocessing.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(f"start_method must be one of {methods}, got {start_method!r}")
        self.start_method = start_method
        self.tasks_per_worker = check_int("tasks_per_worker", tasks_per_worker, minimum=1)
        if max_tasks_per_worker is not None:
            check_int("max_tasks_per_worker", max_tasks_per_worker, minimum=1)
        self.max_tasks_per_worker = max_tasks_per_worker
        if max_worker_memory is not None:
            check_int("max_worker_memory", max_worker_memory, minimum=1)
        self.max_worker_memory = max_worker_memory
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        self._initializer = (
            None if initializer is None else pickling.cloudpickle_dumps((initializer, initargs))
        )
        if prefetch == "auto":
            self._adaptive = True
            self._prefetch = 2
        elif isinstance(prefetch, int) and not isinstance(prefetch, bool):
            self._adaptive = False
            self._prefetch = check_int("prefetch", prefetch, minimum=0)
        else:
            raise ValueError(f"prefetch must be 'auto' or an int >= 0, got {prefetch!r}")
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        # Finite: the graces bound how long a stuck worker can hold up aclose().
        self.cancel_grace = check_seconds("cancel_grace", cancel_grace, finite=True)
        self.kill_grace = check_seconds("kill_grace", kill_grace, finite=True)
        if not isinstance(measure_memory, bool):
            raise TypeError(f"measure_memory must be a bool, got {type(measure_memory).__name__}")
        self.measure_memory = measure_memory
        self.max_crash_retries = check_int("max_crash_retries", max_crash_retries, minimum=0)
        self.max_waiting = check_int("max_waiting", max_waiting, minimum=0)
        self._capacity = CapacitySource(self._slots())
        self._workers: list[_Worker] = []
        self._pending: deque[_ProcTask] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: Any = None
        # Function cache: id(function) -> (fn_id, blob, the function or a weakref to it).
        self._functions: dict[int, tuple[int, pickling.Blob, Any]] = {}
        # Functions submitted once that are not importable: id -> weakref (see
        # _cached_function_id); an entry goes when its function does.
        self._seen_once: dict[int, weakref.ref[Any]] = {}
        # The function most recently submitted, and its cache entry (the common case is
        # many tasks of one function).
        self._last_function: Any = None
        self._last_function_id: tuple[int, pickling.Blob] | None = None
        self._next_fn_id = 0
        self._next_wire_id = 0
        self._seconds_per_task: float | None = None
        # The average duration of each kind of task seen to end (see _dispatch).
        self._durations: dict[int, float] = {}
        self._init_failures = 0
        # Consecutive worker deaths before READY: a worker that cannot even start.
        self._early_deaths = 0
        self._broken: BaseException | None = None
        self._spawning: set[asyncio.Task[None]] = set()
        # Whether _unstart is undoing a start (then no worker is replaced).
        self._unstarting = False
        self._workers_started = 0
        self._workers_lost = 0
        # The payload arena (see _shm.py): from the first start to aclose; None where
        # shared memory is not available (calls then take the pipes).
        self._arena: _shm.Arena | None = None

    def __repr__(self) -> str:
        live = sum(w.state != _DEAD for w in self._workers)
        return (
            f"<ProcessExecutor workers={live}/{self.max_workers} pending={len(self._pending)} "
            f"prefetch={self._prefetch} {'closed' if self._closed else 'open'}>"
        )

    @property
    def capacity(self) -> CapacitySource:
        return self._capacity

    def statistics(self) -> ProcessExecutorStatistics:
        """Return the executor's live numbers."""
        return ProcessExecutorStatistics(
            workers=sum(w.state != _DEAD for w in self._workers),
            pending=len(self._pending),
            in_flight=sum(len(w.tasks) for w in self._workers),
            prefetch=self._prefetch,
            functions_cached=len(self._functions),
            workers_started=self._workers_started,
            workers_lost=self._workers_lost,
        )

    @property
    def prefetch(self) -> int:
        """Tasks queued in each worker beyond the running ones (adapts when ``"auto"``)."""
        return self._prefetch

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [w.pid for w in self._workers if w.pid is not None and w.state != _DEAD]

    def _slots(self) -> int:
        return self.max_workers * self.tasks_per_worker

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers (idempotent), on the running loop: the executor is bound to
        it, and every later call must come from it.

        A cancelled start is undone (every process it started is killed and reaped):
        the next call starts afresh.

        Raises:
            RuntimeError: it started on another event loop.
        """
        if not self._closed:
            self._check_loop("start")
        await super().start()

    def _check_loop(self, what: str) -> None:
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            hint = (
                "which is closed now: await aclose() (from any loop) and make a new executor"
                if loop.is_closed()
                else "use the executor from that loop, or one executor per loop"
            )
            raise RuntimeError(
                f"ProcessExecutor.{what} called from another event loop than start() ({hint})"
            )

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            _forks.preload_forkserver()
        _live_executors.add(self)
        if self._arena is None:
            self._arena = _shm.Arena.create(self.max_workers)
        self._workers = [_Worker(i, self.credit_window) for i in range(self.max_workers)]
        try:
            for worker in self._workers:
                self._prepare(worker)
            spawns = [self._spawn(worker) for worker in self._workers]
            for outcome in await asyncio.gather(*spawns, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            await _to_the_end(self._unstart())
            raise

    async def _unstart(self) -> None:
        """Undo a start that failed or was cancelled: kill and reap every worker it
        started (replacements included), so that the executor can start again.

        Tasks sent to those workers go back to the pending queue, but those that may
        have started (running, or streamed): they fail with :class:`WorkerCrashedError`.
        """
        self._unstarting = True
        try:
            while self._spawning:  # replacements of workers that died early
                await asyncio.wait(list(self._spawning))
            # Started (a _spawn cancelled before its first step started nothing).
            live = [w for w in self._workers if w.state != _DEAD and w.pid is not None]
            for worker in live:
                # Not a crash: no replacement, no early death counted.
                self._unwatch_exit(worker)
                worker.state = _STOPPING  # no new task goes to it
                worker.process.kill()
            await _wait_for_exits([w.process for w in live])
            again: list[_ProcTask] = []
            for worker in self._workers:
                running = set(worker.running[:]) if worker.running is not None else set()
                for task in list(worker.tasks.values()):
                    if task.cancel_requested or task.wire_id in running or task.streamed:
                        crashed = WorkerCrashedError(task.task_id, worker.pid, None, signal.SIGKILL)
                        self._fail(task, crashed)  # a cancel's error wins
                    else:
                        task.worker = None
                        again.append(task)
                worker.tasks.clear()
                self._release(worker)
                if worker.exited is not None and not worker.exited.done():
                    worker.exited.set_result(None)
            self._pending.extendleft(reversed(again))
        finally:
            self._unstarting = False
        self._workers = []
        self._loop = None
        _live_executors.discard(self)

    async def aclose(self) -> None:
        """Close the executor (see :meth:`Executor.aclose`). From another event loop
        than the one it started on, only once that one is closed (then nothing there
        waits for its tasks: its workers are killed and reaped).

        Raises:
            RuntimeError: called from another loop while the executor's own loop is
                open; the executor stays open (close it from its loop).
        """
        loop = self._loop
        if (
            self._closing is None
            and loop is not None
            and not loop.is_closed()
            and loop is not asyncio.get_running_loop()
        ):
            raise RuntimeError(
                "ProcessExecutor.aclose called from another event loop than start(), "
                "which is still open: close it from that loop"
            )
        await super().aclose()

    async def _aclose(self) -> None:
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            await self._aclose_orphaned()  # its own loop is closed (see aclose)
            return
        starting = self._starting
        if starting is not None and not starting.done():
            await asyncio.wait([starting])  # then close what it started, or nothing
        _live_executors.discard(self)
        self._last_function = self._last_function_id = None
        closed = ExecutorClosedError("the ProcessExecutor closed while the task was pending")
        while self._pending:
            self._fail(self._pending.popleft(), closed)
        for spawning in list(self._spawning):
            await asyncio.gather(spawning, return_exceptions=True)
        for worker in self._workers:
            if worker.state == _DEAD:
                continue
            for task in worker.tasks.values():
                if not task.cancel_requested:
                    task.request_cancel(
                        ExecutorClosedError("the ProcessExecutor closed while the task ran")
                    )
                worker.writer.send((wire.CANCEL, task.wire_id))
            worker.writer.send((wire.STOP,))
            worker.state = _STOPPING
            self._flush(worker)
        waiting = [w.exited for w in self._workers if w.exited is not None]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self.cancel_grace + 1.0)
            if late:
                for worker in self._workers:
                    if worker.state != _DEAD and worker.pid is not None:
                        worker.process.terminate()
                _, late = await asyncio.wait(late, timeout=self.kill_grace)
                for worker in self._workers:
                    if worker.state != _DEAD and worker.pid is not None:
                        worker.process.kill()
                        self._confirm_exit(worker)
                if late:
                    await asyncio.wait(late, timeout=5.0)
        for worker in self._workers:
            self._release(worker)
        self._close_arena()

    def _close_arena(self) -> None:
        """Unmap the payload arena (its workers are gone): no fd or memory is left."""
        arena, self._arena = self._arena, None
        if arena is not None:
            arena.close()

    async def _aclose_orphaned(self) -> None:
        """Close an executor whose event loop is closed (an ``asyncio.run`` ended
        without closing it): nothing there listens to its tasks any more, so they
        are dropped unreported; its workers are killed and reaped from this loop."""
        self._loop = None  # nothing more may be scheduled on the closed loop
        self._last_function = self._last_function_id = None
        for task in self._pending:
            self._end_unreported(task)
        self._pending.clear()
        live = [w for w in self._workers if w.state != _DEAD and w.pid is not None]
        for worker in self._workers:
            for task in worker.tasks.values():
                self._end_unreported(task)
            worker.tasks.clear()
            worker.kill_timer = None  # a timer of the closed loop: it never runs
            worker.flush_scheduled = worker.reading = worker.writer_waiting = False
            worker.watching = False
        for worker in live:
            with contextlib.suppress(Exception):
                worker.process.kill()
        await _wait_for_exits([w.process for w in live])
        for worker in self._workers:
            self._release(worker)
        self._close_arena()
        _live_executors.discard(self)

    def _end_unreported(self, task: _ProcTask) -> None:
        task.ended = True
        task.worker = None
        task.escalation = None  # a timer of the closed loop: it never runs

    def _break(self, error: BaseException) -> None:
        """Mark the executor unusable; fail everything waiting."""
        if self._broken is not None:
            return
        self._broken = error
        broken = BrokenExecutorError(f"the ProcessExecutor cannot start workers: {error}")
        broken.__cause__ = error
        while self._pending:
            self._fail(self._pending.popleft(), broken)

    # -- submitting ------------------------------------------------------------------------------

    def submit(
        self, task_id: int, runner: TaskRunner, events: TaskEvents, *, after: Any = None
    ) -> TaskHandle:
        """Queue ``runner`` as task ``task_id``, reporting to ``events``.

        ``after``: a handle this executor returned, of a task not ended and with no
        successor yet (``ValueError`` otherwise; whose executor it came from is not
        checked): the task goes behind it, in its worker, and starts once it ended
        (the capacity hand-off; :meth:`successor_room` says whether there is room
        behind it now)."""
        if self._closed:
            raise ExecutorClosedError("the ProcessExecutor is closed")
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            self._check_loop("submit")
        if after is not None and (
            after.__class__ is not _ProcTask
            or after.ended
            or after.successor is not None
            or after.messages is not None
            or runner.__class__ is Waitable
        ):
            raise ValueError(
                "after= must be a task of a ProcessExecutor, not ended, with no successor, "
                "and neither task waitable"
            )
        task = _ProcTask(
            task_id, self._next_wire_id, events, self._forget, self._stop, self._schedule_flush
        )
        self._next_wire_id += 1
        if after is not None:
            task.after = after
            after.successor = task
        elif runner.__class__ is Waitable:
            if not as_task_events(events).accepts_messages:
                raise NotWaitableError(
                    f"{runner!r} is waitable: its receiver must accept messages "
                    "(run it in a pool runner)"
                )
            task.messages = []
            runner = runner.for_task(task_id)
        if self._broken is not None:
            error = BrokenExecutorError(f"the ProcessExecutor is broken: {self._broken}")
            self._fail(task, error)
            return task
        try:
            task.call, task.size = self._encode(task.wire_id, runner)
        except TaskPicklingError as error:
            # Pickling failed, whatever it raised (sys.exit and other BaseExceptions
            # included, except KeyboardInterrupt): that fails this task, not the caller.
            self._fail(task, error)
            return task
        if task.starts is not None and not any(w.state == _READY for w in self._workers):
            # No worker is ready (they are starting, or being replaced): the task's
            # clock starts now, so a worker whose initializer never returns cannot
            # hold it past its timeout. Once a worker takes it, the clock restarts
            # (a free slot) or stops until it starts (queued behind others).
            task.early = True
            task.starts(task_id)
        message = task.call[0]
        # Its function's id in the cache (a CALL or CALL_ARGS), else its runner's kind.
        task.kind = message[2] if message[0] != wire.CALL_BLOB else _runner_kind(runner)
        if after is not None and not self._pending:
            worker = after.worker
            if worker is not None and worker.state == _READY and worker.isolating is None:
                self._place(worker, task)  # behind its predecessor, at once
                return task
        self._pending.append(task)
        self._dispatch()
        return task


_live_executors: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _kill_live_workers() -> None:
    for executor in list(_live_executors):
        executor._kill_all()


# A child forked from this process must not kill its parent's workers at its exit.
os.register_at_fork(after_in_child=_live_executors.clear)
