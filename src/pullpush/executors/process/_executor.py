"""The process executor: task runners in worker processes, each with its own uvloop.

Data flow::

    caller's event loop (parent)                             worker process i
    ----------------------------                             ----------------
    runner.submit(task) --> ProcessExecutor.submit
        pickle the call (function cached per worker)
        pending queue --> _dispatch: least-loaded worker
        with room (tasks_per_worker + prefetch)
        worker.writer: queue CALL                           call pipe
        flush once per loop turn  ==== frames =========>   on_readable: decode
                                                            run (sync) or create
                                                            a task (async/streams)
                                                            queue FINAL, and runs of
                                                            INTERMEDIATE values
    on_readable (add_reader)   <=== frames ============   flush: once per loop turn,
        decode, unpickle blobs                 result pipe  and each half window
        events.task_intermediates (a run) / final / error
    ack(n) -> CREDIT (batched) ===================>    credits: a stream pauses
                                                            when its window is spent
    pidfd or sentinel readable -> _on_exit: drain the result pipe,
        fail the task(s) that were running (shared array),
        re-queue the tasks sent but not started, respawn

Steps of a task:

1. ``submit`` pickles the call. A ``functools.partial`` (or plain function) of an
   importable function (one pickled by reference), or of a function submitted before,
   travels as a function id plus its arguments; the function itself is cloudpickled
   once and sent to a worker once (``DEFINE``), the first time that worker needs it.
   Small scalar arguments travel raw. Anything else -- a closure, lambda or bound
   method seen for the first time -- is cloudpickled whole with its call, and the
   worker frees it with the call. Large values (arguments, closure variables,
   results) travel out of band: see ``_protocol.py``; a call carrying one travels in
   a frame of its own.
2. The task waits in the parent's pending queue until a ready worker (its start-up
   and initializer done) has room, then its CALL is queued on that worker's call
   pipe; all calls queued during one turn of the event loop go out as one frame.
3. The worker runs it and streams envelopes back (see ``_worker.py``).
4. The parent turns each message into a ``TaskEvents`` call, on the loop: no thread
   and no asyncio task per task; a run of values is one call.

Failures: a worker that dies fails only the task(s) it was running, with
:class:`WorkerCrashedError`; tasks it held but had not started go to another worker,
and so does a plain task that had run there but whose result was lost with it, up to
``max_crash_retries`` times. A message that cannot be decoded, or whose report raises,
fails its own task only: the other messages of the read are handled as usual.
A task cancelled in its worker ends within one read of the call pipe if it is
asynchronous; one stuck in CPU-bound code gets SIGTERM after ``cancel_grace`` and
SIGKILL after ``kill_grace`` more, and its worker is replaced.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import functools
import multiprocessing
import multiprocessing.process
import os
import pickle
import signal
import sys
import threading
import time
import types
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from typing import Any

from ..._exceptions import (
    BrokenExecutorError,
    ExecutorClosedError,
    RemoteTaskError,
    RemoteTraceback,
    TaskPicklingError,
    WorkerCrashedError,
)
from ..._util import check_int, check_seconds
from ...capacity import CapacitySource
from .._base import Executor, TaskEvents, TaskHandle, TaskRunner, intermediates_reporter
from . import _protocol as wire
from . import _worker
from ._sizes import check_call_size

__all__ = ["ProcessExecutor", "ProcessExecutorStatistics"]

_FUNCTIONS_PER_WORKER = 512
_PREFETCH_MAX = 256
_PREFETCH_TARGET = 0.004  # seconds of queued work per worker the adaptive prefetch aims at
_PREFETCH_BYTES = 4 * 2**20
"""Bytes of calls a worker holds (running and queued) beyond which it is sent no more
but its running ones and one ahead (see ``ProcessExecutor._dispatch``)."""
_KINDS_KEPT = 4096  # task kinds whose durations the adaptive prefetch remembers
_INIT_FAILURES_ALLOWED = 3

# Worker states.
_STARTING, _READY, _RETIRING, _STOPPING, _DEAD = range(5)

# The messages about one task (its wire id second), by name.
_TASK_MESSAGES = {
    wire.INTERMEDIATE: "INTERMEDIATE",
    wire.INTERMEDIATE_BLOB: "INTERMEDIATE",
    wire.FINAL: "FINAL",
    wire.FINAL_BLOB: "FINAL",
    wire.ERROR: "ERROR",
}


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_Call = tuple[tuple[Any, ...], "int | None", "wire.Blob | None"]
"""A task's call, ready to be sent: the message, and the function it needs defined in
the worker first (id and blob), if any."""


class _ProcTask:
    """The parent's side of one task: a :class:`TaskHandle`."""

    __slots__ = (
        "acked",
        "call",
        "cancel_error",
        "crashes",
        "credited",
        "done",
        "early",
        "escalation",
        "estimate",
        "events",
        "executor",
        "intermediates",
        "kind",
        "received",
        "seen_running",
        "seq",
        "size",
        "starts",
        "streamed",
        "task_id",
        "wire_id",
        "worker",
    )

    def __init__(
        self, executor: ProcessExecutor, task_id: int, wire_id: int, events: TaskEvents
    ) -> None:
        self.executor = executor
        # task_id is the submitter's (runners number their own tasks, so two runners
        # sharing an executor reuse ids); wire_id is unique in this executor and is
        # what messages, worker tables and the shared running array use.
        self.task_id = task_id
        self.wire_id = wire_id
        self.events = events
        # What reports the task's INTERMEDIATE batches (looked up at the first one).
        self.intermediates: Callable[[int, list[Any]], None] | None = None
        # What reports the task's start (TaskEvents.task_started); None once reported,
        # or when the submitter does not listen.
        self.starts: Callable[[int], None] | None = (
            getattr(events, "task_started", None)
            if getattr(events, "listens_for_starts", True)
            else None
        )
        # Whether its clock was started at submit (no worker was ready then).
        self.early = False
        self.call: _Call | None = None
        self.worker: _Worker | None = None
        # Invariant: done once the terminal event was reported; nothing after that.
        self.done = False
        self.cancel_error: BaseException | None = None
        self.escalation: asyncio.TimerHandle | None = None
        # Whether the last look (at cancel, then at each escalation check) found the
        # task running in its worker: only a task seen running for a whole grace is
        # stuck.
        self.seen_running = False
        # Whether an INTERMEDIATE of the task reached the parent: then it started, and
        # running it again after a crash would repeat envelopes.
        self.streamed = False
        # Flow control: INTERMEDIATE values received, acknowledged by the consumer, and
        # acknowledged to the worker (credited), each counted from the task's start.
        self.received = 0
        self.acked = 0
        self.credited = 0
        # Its call's number among the calls sent to its worker (0, 1, ...), and how
        # many of its runs ended with their worker dying before the result was sent.
        self.seq = -1
        self.crashes = 0
        # For the prefetch (see ProcessExecutor._dispatch): the bytes of its call, the
        # kind of task it is (its function: a cache id, or ~id of its code), and the
        # seconds it was expected to take when sent (None: a kind never seen to end).
        self.size = 0  # small raw arguments (a CALL) count for nothing
        self.kind = 0
        self.estimate: float | None = None

    def cancel(self, error: BaseException | None = None) -> None:
        self.executor._cancel(self, error)

    def ack(self, count: int = 1) -> None:
        self.acked = acked = self.acked + count
        worker = self.worker
        # Credits go back a quarter window at a time, and whenever the consumer has read
        # all that arrived: the worker may be waiting for them with fewer than a quarter
        # window in flight (it charges large values more than one credit).
        if worker is not None and (
            acked - self.credited >= worker.credit_batch or acked >= self.received
        ):
            worker.writer.send((wire.CREDIT, self.wire_id, self.acked - self.credited))
            self.credited = self.acked
            self.executor._schedule_flush(worker)


class _Worker:
    """The parent's side of one worker process."""

    def __init__(self, index: int, credit_window: int) -> None:
        self.index = index
        self.credit_batch = max(1, credit_window // 4)
        self.state = _STARTING
        self.state_before_exit = _STARTING
        self.process: Any = None
        self.pid: int | None = None
        self.writer: wire.FrameWriter
        self.reader: wire.FrameReader
        self.connections: list[Any] = []
        self.running: Any = None
        # Shared with the process: the number (seq) of the last call it started.
        self.started: Any = None
        # A task run again after a crash lost its result (see _after_exit) runs alone:
        # no other task is sent to its worker until it ended.
        self.isolating: _ProcTask | None = None
        # Invariant: the tasks sent to this worker and not ended, by wire id, in send order.
        self.tasks: dict[int, _ProcTask] = {}
        # Invariant: the function ids this worker has cached (least recent first).
        self.defined: OrderedDict[int, None] = OrderedDict()
        self.sent = 0
        # Invariant: over the tasks in ``tasks``: the bytes of their calls, the sum of
        # their known estimates, and how many had none.
        self.bytes = 0
        self.seconds = 0.0
        self.unknown = 0
        self.flush_scheduled = False
        self.writer_waiting = False
        self.reading = False
        self.sentinel: int | None = None
        self.pidfd: _PidFd | None = None
        # Whether _on_exit is registered for the process's end; whether it ran.
        self.watching = False
        self.exit_seen = False
        # Ids of tasks whose cancellation led to terminating this worker.
        self.terminating_for: set[int] = set()
        self.kill_timer: asyncio.TimerHandle | None = None
        self.exited: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = ["starting", "ready", "retiring", "stopping", "dead"][self.state]
        return f"<worker {self.index} pid={self.pid} {state} tasks={len(self.tasks)}>"


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


class ProcessExecutor(Executor):
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
            queue large or long ones. A queued task holds its capacity;
            ``prefetch=0`` makes capacity follow running tasks exactly.
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
        max_crash_retries: times a plain task runs again when its worker died after
            running it but before sending its result (at least once: the result was
            lost; a task that streamed values never runs again). It runs again alone
            in its worker, so that another such death is its own; one more than this
            fails it with :class:`WorkerCrashedError` (``retries`` says how many).
            ``0`` fails it at the first, with the tasks that had run in that worker
            since its last output.

    The worker slots (``max_workers * (tasks_per_worker + prefetch)``) are the
    executor's :attr:`capacity`: a runner holds one while a task is with a worker.

    The executor is bound to the event loop its :meth:`start` ran on: a call from
    another loop raises ``RuntimeError`` (but :meth:`aclose` once that loop is
    closed). A cancelled start is undone, and the next call starts afresh.
    """

    name = "process"
    _warn_unclosed = True

    def _abandon(self) -> None:
        """Collected unclosed (after the ResourceWarning): kill the workers."""
        self._kill_all()

    _restartable = True

    reports_starts = True

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
    ) -> None:
        super().__init__()
        self.max_workers = (
            _usable_cpus()
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
            None if initializer is None else wire.cloudpickle_dumps((initializer, initargs))
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
        self._capacity = CapacitySource(self._slots())
        self._workers: list[_Worker] = []
        self._pending: deque[_ProcTask] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: Any = None
        # Function cache: id(function) -> (fn_id, blob, the function or a weakref to it).
        self._functions: dict[int, tuple[int, wire.Blob, Any]] = {}
        # Functions submitted once that are not importable: id -> weakref (see
        # _cached_function_id); an entry goes when its function does.
        self._seen_once: dict[int, weakref.ref[Any]] = {}
        # The function most recently submitted, and its cache entry (the common case is
        # many tasks of one function).
        self._last_function: Any = None
        self._last_function_id: tuple[int, wire.Blob] | None = None
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
        return self.max_workers * (self.tasks_per_worker + self._prefetch)

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
            _preload_forkserver()
        _live_executors.add(self)
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
                    if task.cancel_error is not None or task.wire_id in running or task.streamed:
                        crashed = WorkerCrashedError(task.task_id, worker.pid, None, signal.SIGKILL)
                        self._fail(task, task.cancel_error or crashed)
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

    def _prepare(self, worker: _Worker) -> None:
        """Create ``worker``'s pipes and process object; tasks are sent to it once it
        says READY."""
        context = self._context
        with _fork_lock:  # a child forked meanwhile knows these fds are the workers'
            call_reader, call_writer = context.Pipe(duplex=False)
            result_reader, result_writer = context.Pipe(duplex=False)
            for connection in (call_writer, result_reader, call_reader, result_writer):
                _worker_fds[connection.fileno()] = weakref.ref(connection)
        worker.running = context.RawArray("q", [-1] * self.tasks_per_worker)
        worker.started = context.RawValue("q", -1)
        options = {
            "started": worker.started,
            "credit_window": self.credit_window,
            "max_memory": self.max_worker_memory,
            "measure_memory": self.measure_memory,
            "initializer": self._initializer,
            "parent_pid": os.getpid(),
        }
        worker.process = context.Process(
            target=_worker.main,
            args=(call_reader, result_writer, worker.running, options),
            name=f"pullpush-worker-{worker.index}",
        )
        call_fd, result_fd = call_writer.fileno(), result_reader.fileno()
        os.set_blocking(call_fd, False)
        os.set_blocking(result_fd, False)
        wire.set_pipe_size(call_fd)
        # The parent's ends, then the child's ends (closed once the child has them).
        worker.connections = [call_writer, result_reader, call_reader, result_writer]
        worker.writer = wire.FrameWriter(call_fd)
        worker.reader = wire.FrameReader(result_fd)
        assert self._loop is not None
        worker.exited = self._loop.create_future()

    async def _spawn(self, worker: _Worker) -> None:
        """Start ``worker``'s process (prepared by :meth:`_prepare`)."""
        loop = self._loop
        assert loop is not None
        # The child's ends: the thread that starts the process closes them after.
        child_ends = worker.connections[2:]
        try:
            started = loop.run_in_executor(
                _starters(), _start_process, worker.process, child_ends, self.start_method == "fork"
            )
        except BaseException:  # no thread to start it (the loop or interpreter is ending)
            self._release(worker)
            if worker.exited is not None and not worker.exited.done():
                worker.exited.set_result(None)
            raise
        del worker.connections[2:]
        try:
            await asyncio.shield(started)
        except BaseException:
            # Failed or cancelled: the start goes on in its thread all the same. Once
            # it is done, kill and reap what it started, whatever happens meanwhile.
            await _to_the_end(self._abandon_start(worker, started))
            raise
        self._workers_started += 1
        worker.pid = worker.process.pid
        worker.sentinel = worker.process.sentinel
        if worker.state == _DEAD:  # closed while starting
            return
        loop.add_reader(worker.reader.fd, self._on_readable, worker)
        worker.reading = True
        self._watch_exit(worker)
        self._schedule_flush(worker)
        self._dispatch()

    async def _abandon_start(self, worker: _Worker, started: asyncio.Future[None]) -> None:
        """``worker``'s start failed or was cancelled: once the thread starting it is
        done, kill its process if it started, reap it, and close its fds."""
        await asyncio.wait([started])
        process = worker.process
        if not started.cancelled() and started.exception() is None and process is not None:
            process.kill()
            await _wait_for_exits([process])
        self._release(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(None)

    def _watch_exit(self, worker: _Worker) -> None:
        """Have :meth:`_on_exit` called when ``worker``'s process ends.

        Its pidfd (Linux >= 5.3) says so whatever other processes hold: a sentinel is
        a pipe or socket whose far end another process may hold open (a ``fork``
        worker started at the same time as another inherits its fds). The sentinel is
        watched too, where there is no pidfd; and a process sent SIGKILL is looked at
        until it is gone (:meth:`_confirm_exit`)."""
        loop = self._loop
        assert loop is not None and worker.pid is not None and worker.sentinel is not None
        worker.pidfd = _PidFd.open(worker.pid)
        if worker.pidfd is not None:
            loop.add_reader(worker.pidfd.fd, self._on_exit, worker)
        loop.add_reader(worker.sentinel, self._on_exit, worker)
        worker.watching = True

    def _unwatch_exit(self, worker: _Worker) -> None:
        loop = self._loop
        if worker.watching and loop is not None:
            worker.watching = False
            if worker.pidfd is not None:
                loop.remove_reader(worker.pidfd.fd)
            if worker.sentinel is not None:
                loop.remove_reader(worker.sentinel)

    def _respawn(self, index: int) -> None:
        if self._closed or self._broken is not None or self._unstarting:
            return
        worker = _Worker(index, self.credit_window)
        self._workers[index] = worker
        self._prepare(worker)
        task = asyncio.ensure_future(self._spawn(worker))
        self._spawning.add(task)
        task.add_done_callback(self._spawned)

    def _spawned(self, task: asyncio.Task[None]) -> None:
        self._spawning.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._break(task.exception())  # type: ignore[arg-type]

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
                if task.cancel_error is None:
                    task.cancel_error = ExecutorClosedError(
                        "the ProcessExecutor closed while the task ran"
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
        _live_executors.discard(self)

    def _end_unreported(self, task: _ProcTask) -> None:
        task.done = True
        task.worker = None
        task.escalation = None  # a timer of the closed loop: it never runs

    def _release(self, worker: _Worker) -> None:
        """Forget a worker's fds and reap its process."""
        loop = self._loop
        if loop is not None:
            if worker.reading:
                loop.remove_reader(worker.reader.fd)
                worker.reading = False
            if worker.writer_waiting:
                loop.remove_writer(worker.writer.fd)
                worker.writer_waiting = False
        self._unwatch_exit(worker)
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
            worker.kill_timer = None
        for connection in worker.connections:
            _close_connection(connection)
        worker.connections = []
        if worker.pidfd is not None:
            worker.pidfd.close()
            worker.pidfd = None
        process, worker.process = worker.process, None
        if process is not None:
            with contextlib.suppress(ValueError):
                if process.exitcode is not None:
                    process.join(0)
                    process.close()
        worker.state = _DEAD

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

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        if self._closed:
            raise ExecutorClosedError("the ProcessExecutor is closed")
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            self._check_loop("submit")
        task = _ProcTask(self, task_id, self._next_wire_id, events)
        self._next_wire_id += 1
        if self._broken is not None:
            error = BrokenExecutorError(f"the ProcessExecutor is broken: {self._broken}")
            self._fail(task, error)
            return task
        try:
            task.call = self._encode(task.wire_id, runner)
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
        if message[0] == wire.CALL:
            # Raw arguments: small (large ones travel out of band, as CALL_ARGS).
            task.kind = message[2]
        else:
            task.size, task.kind = _call_size_and_kind(message, runner)
        self._pending.append(task)
        self._dispatch()
        return task

    def _report_start(self, task: _ProcTask) -> None:
        """Tell the submitter the task started (once)."""
        starts, task.starts = task.starts, None
        if starts is not None and not task.done:
            starts(task.task_id)

    def _encode(self, wire_id: int, runner: TaskRunner) -> _Call:
        function: Any = runner
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] | None = None
        if type(runner) is functools.partial:
            function, args, kwargs = runner.func, runner.args, runner.keywords or None
        cached = self._function_id(function)
        if cached is None:
            try:
                blob = wire.dumps_blob(runner, cloud=True)
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                raise TaskPicklingError(
                    f"the task runner ({type(runner).__qualname__}) could not be pickled: "
                    f"{wire.failure_reason(error, 'pickling it')}"
                ) from error
            check_call_size(self, wire.stream_size(blob), runner)
            return (wire.CALL_BLOB, wire_id, blob), None, None
        fn_id, fn_blob = cached
        if (
            kwargs is None
            and wire.RAW_TYPES.issuperset(map(type, args))
            and not wire.large_raw(args)
        ):
            return (wire.CALL, wire_id, fn_id, args), fn_id, fn_blob
        try:
            args_blob = wire.dumps_blob(
                (tuple(map(wire.wrap_large, args)), wire.wrap_values(kwargs) or {})
            )
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            name = getattr(function, "__qualname__", repr(function))
            where, why = _culprit(args, kwargs or {}, error)
            raise TaskPicklingError(f"{where} of {name} could not be pickled: {why}") from error
        check_call_size(self, wire.stream_size(args_blob), runner)
        return (wire.CALL_ARGS, wire_id, fn_id, args_blob), fn_id, fn_blob

    def _function_id(self, function: Any) -> tuple[int, wire.Blob] | None:
        """The cache id and blob of ``function``, or ``None`` if it is not cacheable."""
        if function is self._last_function:
            return self._last_function_id
        found = self._cached_function_id(function)
        if found is not None:
            # Held strongly while it is the last one: its id cannot be reused meanwhile.
            self._last_function, self._last_function_id = function, found
        return found

    def _cached_function_id(self, function: Any) -> tuple[int, wire.Blob] | None:
        """Cache ``function`` if it is importable (pickled by reference: cheap to keep
        in a worker) or submitted for the second time; a closure, lambda or bound
        method seen once is not cached (``None``): it travels with its call, and the
        worker frees it with the call, along with the data it captured."""
        key = id(function)
        entry = self._functions.get(key)
        if entry is not None:
            fn_id, blob, held = entry
            if (held() if isinstance(held, weakref.ref) else held) is function:
                return fn_id, blob
        try:
            held = weakref.ref(function, self._forget_function)
        except TypeError:
            # Not weak-referenceable: only module-level builtins (immortal in practice)
            # are safe to cache by id; a fresh builtin method could reuse the id.
            if not (
                isinstance(function, types.BuiltinFunctionType)
                and isinstance(function.__self__, types.ModuleType)
            ):
                return None
            held = function
        if not _importable(function):
            seen = self._seen_once.get(key)
            if seen is None or seen() is not function:
                self._seen_once[key] = weakref.ref(
                    function, functools.partial(_drop_seen, self._seen_once, key)
                )
                return None
            del self._seen_once[key]
        try:
            blob = wire.dumps_blob(function, cloud=True)
        except KeyboardInterrupt:
            raise
        except BaseException:  # the whole runner is pickled instead, and fails there
            return None
        check_call_size(self, wire.stream_size(blob), function)
        fn_id = self._next_fn_id
        self._next_fn_id += 1
        self._functions[key] = (fn_id, blob, held)
        return fn_id, blob

    def _forget_function(self, reference: weakref.ref[Any]) -> None:
        for key, (_, _, held) in list(self._functions.items()):
            if held is reference:
                del self._functions[key]

    def _dispatch(self) -> None:
        """Send pending tasks to the least loaded ready workers that have room.

        A worker has room for ``tasks_per_worker`` running tasks and ``prefetch`` queued
        ones. The first queued one (one ahead, when ``prefetch`` allows any) always
        goes; each further one only
        while the calls the worker holds stay within ``_PREFETCH_BYTES`` with it, and,
        with ``prefetch="auto"``, while the work it holds is expected to take at most
        ``_PREFETCH_TARGET`` seconds -- by the durations of each kind of task (its
        function), so that a prefetch learned on short tasks does not queue a long or
        new kind of task behind others: a worker busy with a task of a kind never seen
        to end is sent none beyond one ahead.
        """
        pending = self._pending
        if not pending:
            return
        workers = self._workers
        # While a worker is starting, ready ones take no prefetch: the tasks it will
        # take wait here rather than pile up behind the first ready worker's work.
        starting = any(w.state == _STARTING for w in workers)
        room = self.tasks_per_worker + (0 if starting else self._prefetch)
        ahead = self.tasks_per_worker + 1
        timed = self._adaptive
        durations = self._durations
        while pending:
            task = pending[0]
            best: _Worker | None = None
            # A task run again after a crash lost its result goes to an idle worker.
            best_load = room if not task.crashes else 1
            size = task.size
            estimate = durations.get(task.kind) if timed else 0.0
            for worker in workers:
                # Ready only: a task waits for a worker's start-up (its initializer)
                # here, where cancelling it ends it at once.
                if worker.state == _READY and worker.isolating is None:
                    load = len(worker.tasks)
                    if load < best_load and (
                        load < ahead
                        or (
                            worker.bytes + size <= _PREFETCH_BYTES
                            and (
                                not timed
                                or (
                                    estimate is not None
                                    and not worker.unknown
                                    and worker.seconds <= _PREFETCH_TARGET
                                )
                            )
                        )
                    ):
                        best, best_load = worker, load
            if best is None:
                return
            pending.popleft()
            task.estimate = estimate
            best.bytes += size
            if estimate is None:
                best.unknown += 1
            else:
                best.seconds += estimate
            self._send(best, task)

    def _send(self, worker: _Worker, task: _ProcTask) -> None:
        assert task.call is not None
        message, fn_id, fn_blob = task.call
        if fn_id is not None:
            defined = worker.defined
            if fn_id in defined:
                defined.move_to_end(fn_id)
            else:
                assert fn_blob is not None
                if wire.is_large(fn_blob):
                    worker.writer.send_alone((wire.DEFINE, fn_id, fn_blob))
                else:
                    worker.writer.send((wire.DEFINE, fn_id, fn_blob))
                defined[fn_id] = None
                if len(defined) > _FUNCTIONS_PER_WORKER:
                    old, _ = defined.popitem(last=False)
                    worker.writer.send((wire.FORGET, old))
        if task.starts is not None:
            if len(worker.tasks) < self.tasks_per_worker:
                self._report_start(task)  # a slot is free: it starts on arrival
            else:
                if task.early:
                    waiting = getattr(task.events, "task_waiting", None)
                    if waiting is not None:
                        waiting(task.task_id)
                worker.writer.send((wire.WATCH, task.wire_id))  # queued: the worker says
        if message[0] != wire.CALL and wire.is_large(message[-1]):  # alone in its frame
            worker.writer.send_alone(message)
        else:
            worker.writer.send(message)
        task.worker = worker
        worker.tasks[task.wire_id] = task
        task.seq = worker.sent
        if task.crashes:
            worker.isolating = task
        worker.sent += 1
        if self.max_tasks_per_worker is not None and worker.sent >= self.max_tasks_per_worker:
            worker.state = _RETIRING
        self._schedule_flush(worker)

    def _schedule_flush(self, worker: _Worker) -> None:
        if not worker.flush_scheduled and self._loop is not None:
            worker.flush_scheduled = True
            self._loop.call_soon(self._flush, worker)

    def _flush(self, worker: _Worker) -> None:
        worker.flush_scheduled = False
        if worker.state == _DEAD or not worker.connections:
            return
        try:
            done = worker.writer.flush()
        except OSError:
            return  # the worker died; _on_exit deals with its tasks
        if not done and not worker.writer_waiting and self._loop is not None:
            worker.writer_waiting = True
            self._loop.add_writer(worker.writer.fd, self._on_writable, worker)

    def _on_writable(self, worker: _Worker) -> None:
        try:
            done = worker.writer.write_pending()
        except OSError:
            done = True
        if done and self._loop is not None:
            worker.writer_waiting = False
            self._loop.remove_writer(worker.writer.fd)

    # -- results ---------------------------------------------------------------------------------

    def _on_readable(self, worker: _Worker) -> None:
        frames, eof = worker.reader.read()
        exiting: BaseException | None = None
        for frame in frames:
            for message in frame:
                try:
                    self._on_message(worker, message)
                except BaseException as error:  # noqa: PERF203 - cheap (free from 3.11)
                    # Its own task's failure; the other messages are handled all the same.
                    self._message_failed(worker, message, error)
                    if exiting is None and isinstance(error, (KeyboardInterrupt, SystemExit)):
                        exiting = error
        if eof and worker.reading and self._loop is not None:
            self._loop.remove_reader(worker.reader.fd)
            worker.reading = False
        self._dispatch()
        if exiting is not None:
            # A callback's KeyboardInterrupt or SystemExit goes on, as asyncio lets it
            # out of any callback, once nothing read is left unhandled.
            raise exiting

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        """Handle one message. A task's end is recorded (``_end``, retirement) before
        its ``events`` are called, so that a callback that raises leaves nothing half
        done; what can fail in decoding (unpickling runs the task's code) becomes the
        task's error here; anything else that raises is :meth:`_message_failed`'s."""
        kind = message[0]
        if kind == wire.INTERMEDIATE:
            task = worker.tasks.get(message[1])
            if task is not None and not task.done:
                report = task.intermediates
                if report is None:
                    report = task.intermediates = intermediates_reporter(task.events)
                    task.streamed = True
                task.received += len(message[2])
                report(task.task_id, message[2])
        elif kind == wire.FINAL:
            task = worker.tasks.pop(message[1], None)
            if task is not None:
                if self._adaptive:
                    self._learn(task, message[3])
                self._end(task)
                if worker.state == _RETIRING:
                    self._retire_if_idle(worker)
                if message[4] is not None:
                    self._report_memory(task, message[4])
                if task.cancel_error is None:
                    task.events.task_final(task.task_id, message[2])
                else:  # cancelled: the cancel's error wins, even over a result
                    task.events.task_error(task.task_id, task.cancel_error)
        elif kind == wire.INTERMEDIATE_BLOB:
            task = worker.tasks.get(message[1])
            if task is not None and not task.done:
                task.streamed = True
                task.received += 1
                try:
                    value = wire.loads_blob(message[2])
                except BaseException as error:  # the task's code ran: its failure
                    self._unpickling_failed(task, f"a value ({message[3]})", error)
                else:
                    task.events.task_intermediate(task.task_id, value)
        elif kind == wire.FINAL_BLOB:
            task = worker.tasks.pop(message[1], None)
            if task is not None:
                if self._adaptive:
                    self._learn(task, message[4])
                self._end(task)
                self._retire_if_idle(worker)
                if message[5] is not None:
                    self._report_memory(task, message[5])
                if task.cancel_error is not None:
                    task.events.task_error(task.task_id, task.cancel_error)
                    return
                try:
                    value = wire.loads_blob(message[2])
                except BaseException as error:  # the task's code ran: its failure
                    task.events.task_error(
                        task.task_id, _unpickling_error(task, f"the result ({message[3]})", error)
                    )
                else:
                    task.events.task_final(task.task_id, value)
        elif kind == wire.ERROR:
            task = worker.tasks.pop(message[1], None)
            if task is not None:
                self._end(task)
                self._retire_if_idle(worker)
                if message[6] is not None:
                    self._report_memory(task, message[6])
                task.events.task_error(task.task_id, self._remote_error(task, message))
        elif kind == wire.STARTED:
            task = worker.tasks.get(message[1])
            if task is not None:
                self._report_start(task)
        elif kind == wire.READY:
            if worker.state == _STARTING:
                worker.state = _READY
            self._init_failures = 0
            self._early_deaths = 0
        elif kind == wire.RETIRE:
            if worker.state in (_STARTING, _READY):
                worker.state = _RETIRING
            self._retire_if_idle(worker)
        elif kind == wire.INIT_FAILED:
            self._init_failures += 1
            failure = RemoteTaskError(message[1], message[2])
            failure.__cause__ = RemoteTraceback(message[3])
            if self._init_failures >= _INIT_FAILURES_ALLOWED:
                self._break(failure)

    def _message_failed(
        self, worker: _Worker, message: tuple[Any, ...], error: BaseException
    ) -> None:
        """Handling ``message`` raised ``error`` (one of the task's ``events`` did):
        the message's task, if it has not ended, ends with ``error`` -- a running one
        is cancelled with it, so that it stops in its worker too. If it had ended (the
        callback that raised was its last), ``error`` goes to the loop's exception
        handler."""
        kind = message[0]
        task = worker.tasks.get(message[1]) if kind in _TASK_MESSAGES else None
        if task is not None and not task.done:
            if kind in (wire.INTERMEDIATE, wire.INTERMEDIATE_BLOB):
                self._cancel(task, error)
                if task.cancel_error is error:
                    return
                # Already cancelled (a timeout...): it ends with that; keep this one too.
            else:
                self._fail(task, error)
                return
        if task is None:
            what = f"reporting the {_TASK_MESSAGES.get(kind, kind)} of a task"
        else:
            what = f"reporting a value of task {task.task_id}"
        self._callback_failed(what, error)

    def _callback_failed(self, what: str, error: BaseException) -> None:
        """A submitter's ``events`` callback raised ``error`` after its task had ended:
        log it with the loop's exception handler. ``KeyboardInterrupt`` and
        ``SystemExit`` are not logged: they go on (see :meth:`_on_readable`)."""
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            return
        loop = self._loop
        if loop is None:
            raise error
        loop.call_exception_handler(
            {"message": f"ProcessExecutor: {what} raised", "exception": error, "executor": self}
        )

    def _remote_error(self, task: _ProcTask, message: tuple[Any, ...]) -> BaseException:
        """The error an ERROR message stands for. Total: an exception that cannot be
        unpickled, or unpickles as something else, becomes a :class:`RemoteTaskError`
        that says why."""
        _, _, blob, type_name, text, traceback_text, _, attributes = message
        error: BaseException
        if not isinstance(blob, bytes):  # why the worker could not pickle it
            error = TaskPicklingError(
                f"task {task.task_id} raised {type_name}: {text} -- and that exception could "
                f"not be pickled: {blob}"
            )
        else:
            try:
                unpickled = pickle.loads(blob)
            except BaseException as unpickling:  # the task's code ran: its failure
                error = RemoteTaskError(
                    type_name, text, wire.failure_reason(unpickling, "unpickling it"), attributes
                )
                error.__context__ = unpickling
            else:
                if isinstance(unpickled, BaseException):
                    error = unpickled
                else:
                    error = RemoteTaskError(
                        type_name,
                        text,
                        f"it unpickled as a {type(unpickled).__qualname__} object, "
                        "not an exception",
                        attributes,
                    )
        try:
            if task.cancel_error is None:
                error.__cause__ = RemoteTraceback(traceback_text)
                return error
            # Cancelled: the cancel's error wins. Whatever else the task raised as it
            # stopped (a generator raising while being closed...) is its context.
            if not isinstance(error, asyncio.CancelledError):
                error.__cause__ = RemoteTraceback(traceback_text)
                task.cancel_error.__context__ = error
        except BaseException as chaining:  # an exception class that refuses a __cause__
            error = RemoteTaskError(
                type_name, text, wire.failure_reason(chaining, "setting its __cause__"), attributes
            )
            error.__cause__ = RemoteTraceback(traceback_text)
            if task.cancel_error is None:
                return error
            task.cancel_error.__context__ = error
        return task.cancel_error

    def _report_memory(self, task: _ProcTask, peak_mib: float) -> None:
        """Tell the submitter what the task used, if it listens (``task_resources``);
        should that raise, it is logged, and the task's end still reported."""
        report = getattr(task.events, "task_resources", None)
        if report is not None:
            try:
                report(task.task_id, {"memory_mb": peak_mib})
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:
                self._callback_failed(f"task_resources of task {task.task_id}", error)

    def _unpickling_failed(self, task: _ProcTask, what: str, error: BaseException) -> None:
        """A value of a running task could not be unpickled: fail the task."""
        task.cancel_error = _unpickling_error(task, what, error)
        self._cancel(task, task.cancel_error)

    def _learn(self, task: _ProcTask, seconds: float) -> None:
        """Adapt the prefetch to how long tasks take (``prefetch="auto"`` only): the
        durations of ``task``'s kind (see :meth:`_dispatch`), and the count.

        Short tasks get a deep queue per worker (the pipe round trip would otherwise
        dominate); tasks longer than the target get none: a queued task holds user
        capacity while it waits (SPEC 3 wants capacity held only by running tasks), and
        a task queued behind a long one could sit there while another worker goes idle.
        """
        durations = self._durations
        known = durations.get(task.kind)
        if known is None and len(durations) >= _KINDS_KEPT:
            durations.clear()
        durations[task.kind] = seconds if known is None else 0.7 * known + 0.3 * seconds
        average = self._seconds_per_task
        average = seconds if average is None else 0.9 * average + 0.1 * seconds
        self._seconds_per_task = average
        wanted = min(_PREFETCH_MAX, int(_PREFETCH_TARGET / max(average, 1e-9)))
        current = self._prefetch
        if wanted > 2 * current or wanted < current // 2 or (wanted == 0 < current):
            self._prefetch = wanted
            self._capacity.set_limit(self._slots())

    def _end(self, task: _ProcTask) -> None:
        task.done = True
        worker = task.worker
        if worker is not None:
            if worker.isolating is task:
                worker.isolating = None
            worker.bytes -= task.size
            if task.estimate is None:
                worker.unknown -= 1
            elif worker.tasks:
                worker.seconds -= task.estimate
            else:
                worker.seconds = 0.0  # no rounding error left behind
        task.worker = None
        if task.escalation is not None:
            task.escalation.cancel()
            task.escalation = None

    def _fail(self, task: _ProcTask, error: BaseException) -> None:
        if task.done:
            return
        if task.worker is not None:
            task.worker.tasks.pop(task.wire_id, None)
        self._end(task)
        try:
            task.events.task_error(task.task_id, error)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as failure:  # it ended all the same
            self._callback_failed(f"task_error of task {task.task_id}", failure)

    def _retire_if_idle(self, worker: _Worker) -> None:
        if worker.state == _RETIRING and not worker.tasks:
            worker.state = _STOPPING
            worker.writer.send((wire.STOP,))
            self._flush(worker)

    # -- cancellation ------------------------------------------------------------------------------

    def _cancel(self, task: _ProcTask, error: BaseException | None) -> None:
        if task.done:
            return
        if task.cancel_error is None:
            task.cancel_error = error if error is not None else asyncio.CancelledError()
        worker = task.worker
        if worker is None:
            with contextlib.suppress(ValueError):
                self._pending.remove(task)
            self._fail(task, task.cancel_error)
            return
        worker.writer.send((wire.CANCEL, task.wire_id))
        self._flush(worker)
        if task.escalation is None and self._loop is not None:
            task.seen_running = task.wire_id in worker.running[:]
            task.escalation = self._loop.call_later(self.cancel_grace, self._escalate, task)

    def _escalate(self, task: _ProcTask) -> None:
        """A cancelled task did not end in time: if it has run all along, its worker is
        stuck in it. Terminate that worker. A task that had not started (queued behind
        another in its worker, or in a worker still starting) is never a reason to
        kill the worker: it is dropped when the worker reads the CANCEL, or, if it
        started meanwhile, gets a whole grace from then; so look again later."""
        task.escalation = None
        worker = task.worker
        if task.done or worker is None or worker.state == _DEAD or worker.process is None:
            return
        running = task.wire_id in worker.running[:]
        if not (running and task.seen_running):
            task.seen_running = running
            if self._loop is not None:
                task.escalation = self._loop.call_later(self.cancel_grace, self._escalate, task)
            return
        worker.terminating_for.add(task.wire_id)
        worker.process.terminate()
        if worker.kill_timer is None and self._loop is not None:
            worker.kill_timer = self._loop.call_later(self.kill_grace, self._kill, worker)

    def _kill(self, worker: _Worker) -> None:
        worker.kill_timer = None
        if worker.state != _DEAD and worker.process is not None:
            worker.process.kill()
            self._confirm_exit(worker)

    def _confirm_exit(self, worker: _Worker) -> None:
        """``worker`` was sent SIGKILL: should neither its pidfd nor its sentinel say
        it ended (no pidfd, and the sentinel held open by another process), see for
        ourselves until it has, so that whatever waits for it (a cancelled task, a
        closing executor) always ends."""
        if worker.exit_seen or worker.state == _DEAD or worker.process is None:
            return
        if worker.process.exitcode is not None:
            self._on_exit(worker)
        elif self._loop is not None:
            self._loop.call_later(0.05, self._confirm_exit, worker)

    # -- a worker exits ----------------------------------------------------------------------------

    def _on_exit(self, worker: _Worker) -> None:
        if worker.exit_seen:  # its pidfd and its sentinel both said so
            return
        worker.exit_seen = True
        self._unwatch_exit(worker)
        worker.state_before_exit = worker.state
        worker.state = _STOPPING  # no new task goes to it
        self._workers_lost += 1
        if worker.reading:
            self._on_readable(worker)  # what it wrote before dying is still valid
        self._reap(worker, 0)

    def _reap(self, worker: _Worker, attempts: int) -> None:
        """Collect the exit status; the sentinel can fire an instant before the kernel
        lets the parent reap the process, and a forkserver worker's pidfd before the
        forkserver has reaped it and sent its status: retry (2 ms apart for 0.5 s, then
        20 ms apart up to 10 s in all) rather than block."""
        process = worker.process
        if process is None:  # released meanwhile (by an undone start)
            return
        process.join(0)
        if process.exitcode is None and attempts < 725 and self._loop is not None:
            delay = 0.002 if attempts < 250 else 0.02
            self._loop.call_later(delay, self._reap, worker, attempts + 1)
            return
        self._after_exit(worker)

    def _after_exit(self, worker: _Worker) -> None:
        process = worker.process
        code = process.exitcode
        signal = -code if code is not None and code < 0 else None
        exitcode = None if signal is not None else code
        running = {worker.running[i] for i in range(len(worker.running))} - {-1}
        # The calls it started are those numbered up to this (they start in order).
        started = -1 if worker.started is None else worker.started.value
        orphans = []
        for task in list(worker.tasks.values()):
            # Started: running now, or streamed and then lost its end with the worker.
            # Any other task is sent again: it never started, or it finished and its
            # result was lost unsent (then it runs twice: at least once on a crash,
            # up to max_crash_retries times).
            if task.wire_id in running or task.streamed:
                cancelled = task.wire_id in worker.terminating_for or self._closed
                if cancelled and task.cancel_error is not None:
                    error: BaseException = task.cancel_error
                else:
                    error = WorkerCrashedError(task.task_id, worker.pid, exitcode, signal)
                self._fail(task, error)
            else:
                orphans.append(task)
        worker.tasks.clear()
        self._release(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(None)
        if (
            worker.state_before_exit == _STARTING
            and not self._closed
            and not worker.terminating_for
        ):
            # It died before it could say it was ready (and not because it was told to).
            self._early_deaths += 1
            if self._early_deaths >= _INIT_FAILURES_ALLOWED:
                how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
                self._break(
                    RuntimeError(
                        f"{self._early_deaths} worker processes in a row died before they "
                        f"were ready ({how}); see their output above"
                    )
                )
        for task in reversed(orphans):
            # Sent but not started, or run but its result lost: another worker runs it.
            task.worker = None
            if task.cancel_error is not None:
                self._fail(task, task.cancel_error)
                continue
            if task.seq <= started:
                # It ran, and its result was lost. Maybe the worker died of it, maybe of
                # a task that ran after it before their results were sent: it runs
                # again alone (see _dispatch), so a crash then is its own.
                task.crashes += 1
                if task.crashes > self.max_crash_retries:
                    retries = self.max_crash_retries
                    self._fail(
                        task,
                        WorkerCrashedError(task.task_id, worker.pid, exitcode, signal, retries),
                    )
                    continue
            self._pending.appendleft(task)
        if not self._closed:
            self._respawn(worker.index)
        if self._broken is not None:
            while self._pending:
                self._fail(self._pending.popleft(), BrokenExecutorError(str(self._broken)))
        self._dispatch()

    # -- interpreter exit --------------------------------------------------------------------------

    def _kill_all(self) -> None:
        """At interpreter exit: make sure no worker outlives this process."""
        for worker in self._workers:
            for connection in worker.connections:
                with contextlib.suppress(OSError):
                    _close_connection(connection)
            if worker.process is not None and worker.state != _DEAD:
                with contextlib.suppress(Exception):
                    worker.process.kill()
                    worker.process.join(1.0)


_starter_pool: concurrent.futures.ThreadPoolExecutor | None = None
_starter_lock = threading.Lock()


def _starters() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that start workers: this module's own, which live as long as the
    process. ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a worker ends,
    and a loop's default executor ends with its loop (``asyncio.run``): its workers
    would die with it, and the executor, still open, would start replacements."""
    global _starter_pool
    with _starter_lock:
        if _starter_pool is None:
            _starter_pool = concurrent.futures.ThreadPoolExecutor(
                min(32, _usable_cpus() + 4), thread_name_prefix="pullpush-start"
            )
        return _starter_pool


def _start_process(process: Any, child_ends: list[Any], fork: bool) -> None:
    """Start a worker's process (on a thread: it blocks for the fork), close the
    child's ends of its pipes here, then take it out of multiprocessing's list of
    children.

    ``fork``: the child is a copy of this process, with every fd open here. The start
    holds ``_fork_lock``, so no other worker's fd is being opened or closed meanwhile
    and the child closes all of them (:func:`_after_fork_in_child`) but its own ends.

    ``Process.start()`` first polls every child in that list (``_cleanup``), from the
    thread it runs on. With the forkserver, polling reads the child's exit status from
    a pipe, and two polls of one dying worker at once (a replacement starting on a
    thread while the loop reaps the dead one) split the read: one of them sees EOF and
    records exit code 255 (seen in the stress suite, about 1 kill in 250). The executor
    reaps its own workers, on its loop only, and kills them at exit (``_kill_all``).
    """
    try:
        if fork:
            with _fork_lock:
                _forking.keep = {connection.fileno() for connection in child_ends}
                try:
                    process.start()
                finally:
                    _forking.keep = ()
        else:
            process.start()
    finally:
        for connection in child_ends:
            _close_connection(connection)
    multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]


async def _to_the_end(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end even if the caller is cancelled meanwhile; the
    cancellation is raised once it is done."""
    task = asyncio.ensure_future(coroutine)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():
                raise
            cancelled = error
            continue
        break
    if cancelled is not None:
        raise cancelled


async def _wait_for_exits(processes: list[Any], timeout: float = 5.0) -> None:
    """Wait (polling, the loop free) until ``processes``, sent SIGKILL, have exited and
    their exit status was collected; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:  # noqa: ASYNC110 - a process has no awaitable end here
        await asyncio.sleep(0.005)


# -- the workers' fds, and forks ---------------------------------------------------------------

_fork_lock = threading.Lock()
"""Held while a ``fork`` worker starts, and while a worker's fd is opened (and recorded)
or closed (and forgotten): a child forked from this process knows exactly which of its
fds are the workers'."""
_worker_fds: dict[int, weakref.ref[Any]] = {}
"""The fds this process holds for its workers (pipe ends, pidfds), each with its owner
(a ``Connection`` or a :class:`_PidFd`, which close it), held weakly: an executor
dropped unclosed closes its fds as before."""
_forking = threading.local()
"""``keep``: the fds that the worker being forked on this thread keeps (its own ends)."""


def _close_connection(connection: Any) -> None:
    """Close a worker's pipe end (a ``Connection``), forgetting its fd first."""
    with _fork_lock:
        if not connection.closed:
            _worker_fds.pop(connection.fileno(), None)
            connection.close()


class _PidFd:
    """A process's pidfd (Linux >= 5.3): readable once the process has exited."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, pid: int) -> _PidFd | None:
        """``pid``'s pidfd, or ``None`` where there is none (not Linux >= 5.3), or
        the process is gone already (its sentinel says so)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return None
        with _fork_lock:
            try:
                pidfd = cls(pidfd_open(pid))
            except OSError:
                return None
            _worker_fds[pidfd.fd] = weakref.ref(pidfd)
        return pidfd

    def close(self) -> None:
        with _fork_lock:
            self._close()

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _worker_fds.pop(fd, None)
            os.close(fd)

    def __del__(self) -> None:
        # Dropped unclosed (its executor was): no lock here, it may be held by the
        # thread this runs on. At worst a child forked meanwhile keeps a copy.
        with contextlib.suppress(OSError):
            self._close()


def _after_fork_in_child() -> None:
    """In any child forked from this process: close every fd of the workers but the
    ends of the worker being forked (a worker holding another's pipes or pidfd would
    keep its sibling's ends open), forget the executors (the child must not kill its
    parent's workers at its exit), and take fresh locks (a thread of the parent may
    have held them) and starter threads."""
    global _fork_lock, _starter_lock, _starter_pool
    _fork_lock = threading.Lock()
    _starter_lock = threading.Lock()
    _starter_pool = None  # its threads are the parent's
    keep = getattr(_forking, "keep", ())
    for fd, owner in list(_worker_fds.items()):
        held = owner()
        if fd not in keep and held is not None:
            with contextlib.suppress(OSError):
                if isinstance(held, _PidFd):
                    held._close()
                else:
                    held.close()
    _worker_fds.clear()
    _live_executors.clear()


def _preload_forkserver() -> None:
    """Have the forkserver import the worker side before it forks any worker (when it
    starts; a server already running keeps its list), added to the list already set
    rather than replacing it (by default ``["__main__"]``)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", ["__main__"]))
    if _worker.__name__ not in current:
        forkserver.set_forkserver_preload([*current, _worker.__name__])


def _call_size_and_kind(message: tuple[Any, ...], runner: Any) -> tuple[int, int]:
    """The bytes a CALL_ARGS or CALL_BLOB call carries (its pickle and out-of-band
    buffers), and what tells its kind of task from others for the prefetch: its
    function's id in the cache (as for a CALL), or, for a runner pickled whole, the
    code its function runs (shared by every closure of one ``def``), else its type."""
    if message[0] == wire.CALL_ARGS:
        return wire.blob_size(message[3]), message[2]
    function = runner.func if type(runner) is functools.partial else runner
    code = getattr(function, "__code__", None)
    return wire.blob_size(message[2]), ~id(code if code is not None else type(function))


def _culprit(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: BaseException
) -> tuple[str, str]:
    """Which argument cannot be pickled (with its type) and why, for the message;
    ``error`` is what pickling them all raised."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, value in named:
        try:
            wire.dumps(value)
        except KeyboardInterrupt:  # noqa: PERF203 - an error path, not a hot one
            raise
        except BaseException as own:
            error = own
            where = f"{where} ({type(value).__qualname__})"
            break
    else:
        where = "the arguments"
    if not isinstance(error, pickle.PicklingError):  # what pickling raised, as it was
        return where, wire.failure_reason(error, "pickling it")
    cause = error.__cause__
    if isinstance(cause, BaseException) and wire.error_text(cause):
        return where, wire.failure_reason(cause, "pickling it")
    return where, wire.error_text(error)


def _importable(function: Any) -> bool:
    """Whether pickle sends ``function`` by reference: its module (not ``__main__``)
    holds it under its qualified name, so a worker imports it rather than keeping a
    copy of its code and data."""
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str) or module == "__main__":
        return False
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    return found is function


def _drop_seen(table: dict[int, weakref.ref[Any]], key: int, reference: weakref.ref[Any]) -> None:
    if table.get(key) is reference:
        del table[key]


def _unpickling_error(task: _ProcTask, what: str, error: BaseException) -> TaskPicklingError:
    failure = TaskPicklingError(
        f"task {task.task_id}: {what} could not be unpickled in the parent: "
        f"{wire.failure_reason(error, 'unpickling it')}"
    )
    failure.__cause__ = error
    return failure


_live_executors: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _kill_live_workers() -> None:
    for executor in list(_live_executors):
        executor._kill_all()


os.register_at_fork(after_in_child=_after_fork_in_child)
