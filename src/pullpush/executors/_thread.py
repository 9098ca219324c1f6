"""The thread executor: task runners run in a fixed pool of threads, each thread
running its own event loop forever (uvloop when it is installed).

Data flow, with C the caller's loop (the one :meth:`ThreadExecutor.start` ran on) and
W one worker thread running its loop L::

    C  submit ──lock──> an idle worker?  yes: L.call_soon_threadsafe(start the task)
                                          no: pending deque (FIFO); a worker that
                                              finishes a task takes the next one
    W  run the runner: run_sync_step(), then drive() in an asyncio task of L
    W  every event ──> W's outbox ──(empty -> non-empty only)──> C.call_soon_threadsafe(flush)
    C  flush: the whole outbox, in order, to TaskEvents (an INTERMEDIATE event is a
       batch of a generator's values, see drive())
    C  ack(n) ──> W's ack inbox ──(empty -> non-empty only)──> L.call_soon_threadsafe(apply)
    W  apply: Credits.ack(n) on L, which resumes a task paused by flow control
    C  cancel ──> flag read by W  +  L.call_soon_threadsafe(cancel the asyncio task)

Batching: a threadsafe call writes to the target loop's self-pipe (a system call and a
wake-up), so events and acknowledgements are batched per worker thread: one call
carries everything queued until the other side reads the batch.

One task per thread at a time: a sync runner blocks its thread's loop while it runs,
so threads are never shared. :attr:`ThreadExecutor.capacity` has one unit per thread,
so the pool runners never queue more tasks than there are threads; tasks submitted
beyond that (standalone use) wait in a FIFO queue on the executor.

Waitable tasks (Dask's secede/rejoin): a task that parks in ``receive()`` keeps its
thread, which *secedes* from the pool -- it stops counting as one of the
``max_workers`` -- and the executor puts a spare thread in its place (the runner
gave the task's unit of :attr:`ThreadExecutor.capacity` back): one from its reserve,
else a new one. When the task resumes its thread *rejoins*; a thread that finishes a
task while the pool has more than ``max_workers`` members leaves it, as does a
seceded thread whose task ends: into the reserve, idle, for the next task that
parks (creating a thread and its loop costs a millisecond or so), unless the
reserved and seceded threads reach ``max_waiting``: then it retires (its loop stops,
the thread exits). So the executor has at most ``max_workers + max_waiting + 1``
threads; :meth:`ThreadExecutor.aclose` stops them all.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .._exceptions import NotWaitableError, WaitLimitError
from .._util import check_int
from ..capacity import CapacitySource
from ..runners._envelope import EnvelopeType
from ..runners._waitable import Waitable
from ._base import (
    BaseTaskHandle,
    Executor,
    ExecutorClosedError,
    TaskEvents,
    TaskHandle,
    TaskRunner,
    as_task_events,
)
from ._drive import Credits, drive, run_sync_step
from ._inbox import Inbox

__all__ = ["ThreadExecutor"]

# The kinds of event a worker thread posts: the envelopes' (an INTERMEDIATE event
# carries a list of values), and _BEGAN: a queued task got a thread.
_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL
_ERROR = EnvelopeType.ERROR
_BEGAN = "BEGAN"
_PARKED = "PARKED"  # a waitable task waits in receive(): value (received, timeout)
_RECEIVED = "RECEIVED"  # a waitable task took messages: value, how many in all

YIELD_EVERY = 0.005
"""Seconds a sync generator runs before its thread's loop gets a turn (its values are
posted then, and acknowledgements and cancellations are applied)."""

# _ThreadTask.state, guarded by ThreadExecutor._lock.
_PENDING = 0  # in ThreadExecutor._pending, waiting for a thread
_STARTED = 1  # handed to a worker thread (which may not have begun running it yet)
_DROPPED = 2  # cancelled while pending: it never runs


def default_max_workers() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity masks on this platform
        return max(1, os.cpu_count() or 1)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class ThreadExecutor(Executor):
    """Run task runners in a fixed pool of threads, each with its own event loop.

    Every thread runs an event loop forever (uvloop when installed, else asyncio's),
    and runs one task at a time: a plain function or sync generator runs on that
    thread and blocks only it; coroutines and async generators run as asyncio tasks
    of the thread's loop. Capacity acquisition, task pulling and envelope delivery
    stay on the caller's loop. The runner is called in a copy of the submitter's
    :mod:`contextvars` context, as :func:`asyncio.to_thread` does. The threads share
    the GIL: they suit blocking I/O and code that releases it (``hashlib``, ``zlib``,
    NumPy); CPU-bound pure Python belongs in worker processes.

    Ordering: a task's envelopes arrive in the order it produced them, its terminal
    envelope last. Events travel back in batches (one threadsafe call per batch per
    thread), so envelopes of different tasks interleave by batch.

    Backpressure: a streaming task may have ``credit_window`` INTERMEDIATE envelopes
    unread; then its thread pauses it (an async runner awaits, a sync generator is
    not resumed) until the consumer reads on. Nothing is dropped.

    Cancellation (a consumer leaving early, a runner's ``timeout``, :meth:`aclose`):
    an async runner is cancelled in its thread's loop, as it would be inline. A sync
    generator is stopped at its next ``yield``. A plain function cannot be
    interrupted: it runs to the end, its result is discarded, and the task's
    cancellation or timeout error is reported only when it returns -- never earlier,
    because a task reported ended gives its thread (and its capacity) to the next
    task. Once ``cancel()`` was called, a task ends with that error even when it
    finished an instant before the request reached its thread.

    Args:
        max_workers: how many threads (default: the CPUs this process may use, from
            ``os.sched_getaffinity``, at least 1).
        credit_window: INTERMEDIATE envelopes a task may have unread before it is
            paused (>= 1).
        thread_name_prefix: the threads are named ``f"{prefix}-{i}"``.
        max_waiting: how many waitable tasks may wait in ``receive()`` at once, each
            keeping its (seceded) thread while the pool runs ``max_workers`` others;
            a task that would wait beyond that gets :class:`~pullpush.WaitLimitError`
            from ``receive``. Threads that hosted waiting tasks are kept, idle, for the
            next ones (within the same bound).

    The threads start in :meth:`start` (which binds the executor to the running
    loop: every later ``submit`` must come from that loop) and are joined by
    :meth:`aclose`, which cancels what runs, waits for it to end -- a plain function
    still running is waited for -- then stops each thread's loop. The threads are
    daemon threads, so an executor that is never closed does not keep the
    interpreter alive.
    """

    name = "thread"
    _warn_unclosed = True

    def _abandon(self) -> None:
        """Collected unclosed (after the ResourceWarning): stop the threads' loops."""
        for worker in self._workers:
            worker.stop()

    reports_starts = True
    runs_waitables = True

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        credit_window: int = 256,
        thread_name_prefix: str = "pullpush",
        max_waiting: int = 256,
    ) -> None:
        super().__init__()
        if max_workers is None:
            max_workers = default_max_workers()
        self.max_workers: int = check_int("max_workers", max_workers, minimum=1)
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        if not isinstance(thread_name_prefix, str):
            raise TypeError(
                f"thread_name_prefix must be a str, got {type(thread_name_prefix).__name__}"
            )
        self.thread_name_prefix = thread_name_prefix
        self.max_waiting = check_int("max_waiting", max_waiting, minimum=0)
        self._capacity = CapacitySource(self.max_workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_ThreadWorker] = []
        self._ready: asyncio.Future[None] | None = None
        # Shared by the caller's thread and every worker thread, guarded by _lock.
        # Invariant: a task is in _pending exactly while its state is _PENDING; a
        # worker is in _idle exactly while it has no task and _pending is empty.
        self._lock = threading.Lock()
        self._pending: deque[_ThreadTask] = deque()
        self._idle: list[_ThreadWorker] = []
        # Invariant: _members counts the threads started and not retired that are not
        # seceded (idle, running an active task, or starting); _waiting the seceded
        # ones (each hosting a task parked in receive()).
        self._members = 0
        self._waiting = 0
        self._spares = 0  # spare threads started so far (their names)
        # Threads out of the pool, idle, kept to replace the next seceded ones (their
        # loops run; they are neither members nor waiting).
        self._reserve: list[_ThreadWorker] = []
        # Caller's thread only. Invariant: _tasks holds every task submitted whose
        # terminal event has not been delivered yet.
        self._tasks: set[_ThreadTask] = set()
        self._drained: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._workers else "new"
        return (
            f"<ThreadExecutor {state} max_workers={self.max_workers} "
            f"running={len(self._tasks) - len(self._pending)} pending={len(self._pending)}>"
        )

    @property
    def capacity(self) -> CapacitySource:
        """One unit per thread: the runners hold one per task they submitted."""
        return self._capacity

    @property
    def running(self) -> int:
        """Tasks submitted and not yet reported ended (queued ones included)."""
        return len(self._tasks)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ready = ready = loop.create_future()
        readies = []
        self._members = self.max_workers
        for index in range(self.max_workers):
            worker = _ThreadWorker(self, f"{self.thread_name_prefix}-{index}", loop)
            self._workers.append(worker)
            readies.append(worker.ready)
        for worker in self._workers:
            worker.thread.start()
        try:
            await asyncio.gather(*readies)
        except BaseException as error:
            self._loop = None  # submit() refuses work; aclose() stops what started
            _fail(ready, error)
            ready.exception()  # retrieved here: whoever else waits sees it too
            raise
        # Tasks submitted while the threads were starting wait in _pending: hand them
        # out now, so the invariant on _idle holds from here on.
        idle = list(reversed(self._workers))
        handed_out = []
        with self._lock:
            while self._pending and idle:
                task = self._pending.popleft()
                task.worker = idle.pop()
                task.state = _STARTED
                handed_out.append(task)
            self._idle.extend(idle)
        for task in handed_out:
            assert task.worker is not None
            task.report_start()
            task.worker.loop.call_soon_threadsafe(task.start_in_worker)
        _resolve(ready)

    async def _aclose(self) -> None:
        if self._ready is None:
            return  # never started: no thread to stop
        loop = asyncio.get_running_loop()
        error = ExecutorClosedError("ThreadExecutor closed while the task ran")
        for task in list(self._tasks):
            task.cancel(error)
        # A plain function cannot be interrupted: wait until every task has reported
        # its end, so no thread is stopped under a running runner.
        while self._tasks:
            self._drained = loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        await asyncio.gather(*(w.ready for w in self._workers), return_exceptions=True)
        for worker in self._workers:
            worker.stop()
        await asyncio.gather(*(w.exited for w in self._workers), return_exceptions=True)
        for worker in self._workers:
            # The thread posted its exit as its last action; it ends within
            # microseconds. Poll instead of blocking this loop in join().
            while worker.thread.is_alive():  # noqa: ASYNC110 - a thread has no awaitable end
                await asyncio.sleep(0.001)
            worker.thread.join()

    # -- submitting ------------------------------------------------------------------------

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        """Start ``runner`` on an idle thread, or queue it (FIFO) until one is free."""
        if self._closed:
            raise ExecutorClosedError("ThreadExecutor is closed")
        if self._loop is None:
            raise RuntimeError(
                "ThreadExecutor is not started: await executor.start() or use "
                "'async with ThreadExecutor() as executor'"
            )
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("ThreadExecutor.submit called from another event loop than start()")
        events = as_task_events(events)
        if runner.__class__ is Waitable and not events.accepts_messages:
            raise NotWaitableError(
                f"{runner!r} is waitable: its receiver must accept messages "
                "(run it in a pool runner)"
            )
        task = _ThreadTask(
            task_id,
            runner,
            events,
            self.credit_window,
            self._task_ended,
            self._unqueue,
        )
        if runner.__class__ is Waitable:
            task.inbox = inbox = Inbox(task_id, task.parked, task.received, blocking=True)
            task.runner = runner.bind(inbox)
        self._tasks.add(task)
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                task.worker = worker
                task.state = _STARTED
            else:
                self._pending.append(task)
                return task
        task.report_start()
        worker.loop.call_soon_threadsafe(task.start_in_worker)
        return task

    def _secede(self, worker: _ThreadWorker) -> None:
        """Worker thread: its task parks in ``receive()``; it leaves the pool."""
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise WaitLimitError(
                    f"the ThreadExecutor hosts max_waiting={self.max_waiting} waiting tasks already"
                )
            self._waiting += 1
            self._members -= 1
            worker.seceded = True

    def _rejoin(self, worker: _ThreadWorker) -> None:
        """Caller's thread: a parked task resumes; its thread rejoins the pool."""
        with self._lock:
            if not worker.seceded:
                return
            worker.seceded = False
            self._waiting -= 1
            self._members += 1

    def _replace_seceded(self) -> None:
        """Caller's thread: a thread seceded; start a spare one if the pool is short."""
        if self._closed or self._loop is None:
            return
        with self._lock:
            if self._members >= self.max_workers:
                return
            self._members += 1
            reserved = self._reserve.pop() if self._reserve else None
        if reserved is not None:
            try:
                reserved.loop.call_soon_threadsafe(reserved._next)
                return
            except RuntimeError:  # pragma: no cover - its loop is closed: start one
                pass
        self._workers = [w for w in self._workers if w.thread.is_alive()]
        self._spares += 1
        worker = _ThreadWorker(
            self, f"{self.thread_name_prefix}-spare-{self._spares}", self._loop, spare=True
        )
        self._workers.append(worker)
        worker.thread.start()

    def _task_ended(self, task: _ThreadTask) -> None:
        """Caller's thread, a task's ``forget`` callback: ``task`` reports its end."""
        self._tasks.discard(task)
        if not self._tasks and self._drained is not None:
            _resolve(self._drained)

    def _unqueue(self, task: _ThreadTask) -> bool:
        """Caller's thread, a task's callback: drop ``task`` from the queue if it
        waits there (then it never runs); return whether it did."""
        with self._lock:
            if task.state != _PENDING:
                return False
            self._pending.remove(task)
            task.state = _DROPPED
            return True

    def _next_task(self, worker: _ThreadWorker) -> _ThreadTask | bool | None:
        """Worker thread, its task finished (or a spare thread started): hand it the
        next pending task, put it with the idle ones (``None``), or take it out of
        the pool (it was seceded, or the pool has more members than ``max_workers``):
        into the reserve of threads kept for the next secession (``True``), or, the
        reserve full, retire it (``False``: its loop stops)."""
        with self._lock:
            leaves = False
            if worker.seceded:
                worker.seceded = False
                self._waiting -= 1
                leaves = True
            elif self._members > self.max_workers:
                self._members -= 1
                leaves = True
            if leaves:
                if len(self._reserve) + self._waiting < self.max_waiting:
                    self._reserve.append(worker)
                    return True
                return False
            if self._pending:
                following = self._pending.popleft()
                following.worker = worker
                following.state = _STARTED
                return following
            self._idle.append(worker)
            return None


class _ThreadWorker:
    """One thread and its event loop.

    Thread ownership: ``loop`` runs on ``thread``; ``_outbox`` and ``_acks`` cross
    threads under ``_lock``; everything else is set before the thread starts or read
    only on the caller's thread (``ready``, ``exited``).
    """

    __slots__ = (
        "_acks",
        "_caller",
        "_executor",
        "_lock",
        "_outbox",
        "exited",
        "loop",
        "ready",
        "seceded",
        "spare",
        "thread",
    )

    def __init__(
        self,
        executor: ThreadExecutor,
        name: str,
        caller: asyncio.AbstractEventLoop,
        spare: bool = False,
    ):
        # Weak: the thread must not keep its executor alive, so one dropped unclosed
        # is collected (and warns). A task that ends holds it (_ThreadTask.executor).
        self._executor = weakref.ref(executor)
        self._caller = caller
        self.ready: asyncio.Future[None] = caller.create_future()
        self.exited: asyncio.Future[None] = caller.create_future()
        # Set by the thread before it reports ready; read by the caller after that.
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._lock = threading.Lock()
        # Invariant (under _lock): _outbox holds the events this thread posted that the
        # caller has not flushed yet, and a flush is scheduled on the caller's loop
        # exactly while it is non-empty.
        self._outbox: list[tuple[_ThreadTask, str, Any]] = []
        # Invariant (under _lock): _acks holds acknowledgements from the caller not yet
        # applied on this thread, and an apply is scheduled on ``loop`` exactly while
        # it is non-empty.
        self._acks: dict[_ThreadTask, int] = {}
        # Whether its task is parked in receive() (under the executor's lock).
        self.seceded = False
        # Started in place of a seceded thread: it joins the pool once its loop runs.
        self.spare = spare
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    # -- the thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        """Worker thread: run the loop until :meth:`stop`, then tidy up and report."""
        try:
            loop = _new_loop()
        except BaseException as error:
            self._post_to_caller(_fail, self.ready, error)
            self._post_to_caller(_resolve, self.exited)
            return
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.call_soon(self._post_to_caller, _resolve, self.ready)
            if self.spare:
                loop.call_soon(self._next)
            loop.run_forever()
            # Stopped: every task has ended; what the runners spawned is cancelled.
            leftovers = asyncio.all_tasks(loop)
            for leftover in leftovers:
                leftover.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self._post_to_caller(_resolve, self.exited)

    def _post_to_caller(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._caller.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the caller's loop is closed: nobody is listening any more

    def post(self, task: _ThreadTask, kind: str, value: Any) -> None:
        """Worker thread: queue one event for the caller's loop."""
        with self._lock:
            outbox = self._outbox
            outbox.append((task, kind, value))
            if len(outbox) != 1:
                return  # a flush is scheduled already and will take this one too
        self._post_to_caller(self._flush)

    def end(self, task: _ThreadTask, kind: str, value: Any) -> None:
        """Worker thread: ``task`` finished; take the next pending task or go idle,
        then report the end (so the thread is free before its capacity comes back)."""
        task.credits = None
        executor = self._executor()
        assert executor is not None  # task.forget holds it
        following = executor._next_task(self)
        self.post(task, kind, value)
        self._go_on(following)

    def _next(self) -> None:
        """Worker thread, a spare one just started: take a pending task or go idle."""
        executor = self._executor()
        if executor is not None:
            self._go_on(executor._next_task(self))

    def _go_on(self, following: _ThreadTask | bool | None) -> None:
        if following is False:
            self.loop.call_soon(self.loop.stop)  # retired: the thread exits
        elif following is not None and following is not True:
            self.post(following, _BEGAN, None)
            self.loop.call_soon(following.start_in_worker)

    def _apply_acks(self) -> None:
        """Worker thread: hand the caller's acknowledgements to the tasks' credits."""
        with self._lock:
            acks = self._acks
            self._acks = {}
        for task, count in acks.items():
            credits = task.credits
            if credits is not None:
                credits.ack(count)

    def stop(self) -> None:
        """Caller's thread: stop the loop (every task has ended)."""
        loop = self.loop
        if loop is None:
            return  # the thread failed before it had a loop, and has exited
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass  # already closed

    # -- the caller's side -------------------------------------------------------------------

    def _flush(self) -> None:
        """Caller's thread: deliver the outbox to the tasks' events, in order."""
        with self._lock:
            items = self._outbox
            self._outbox = []
        for task, kind, value in items:
            try:
                if kind is _INTERMEDIATE:
                    # After cancel() nothing more is reported but the end.
                    if not task.cancel_requested:
                        task.events.task_intermediates(task.task_id, value)
                elif kind is _BEGAN:
                    task.report_start()
                elif kind is _RECEIVED:
                    if not task.ended:
                        task.events.task_received(task.task_id, value)
                elif kind is _PARKED:
                    executor = self._executor()
                    if executor is not None:
                        executor._replace_seceded()
                    if not task.ended:
                        task.events.task_parked(task.task_id, *value)
                elif kind is _FINAL:
                    task.report_end(None, value)
                else:
                    task.report_end(value)
            except Exception as error:  # noqa: PERF203 - a TaskEvents bug must not lose the batch
                self._caller.call_exception_handler(
                    {"message": "TaskEvents callback raised", "exception": error}
                )

    def post_ack(self, task: _ThreadTask, count: int) -> None:
        """Caller's thread: queue an acknowledgement for this thread."""
        with self._lock:
            acks = self._acks
            scheduled = bool(acks)
            acks[task] = acks.get(task, 0) + count
            if scheduled:
                return  # an apply is scheduled already and will take this one too
        try:
            self.loop.call_soon_threadsafe(self._apply_acks)
        except RuntimeError:
            pass  # the thread's loop is closed: the task is long over


class _ThreadTask(BaseTaskHandle):
    """One submitted task: the runner's :class:`TaskHandle`.

    Thread ownership: ``state`` and ``worker`` change under the executor's lock;
    ``cancel_requested`` and ``cancel_error`` are written only by the caller's thread
    (``cancel_requested`` is read by the worker, a plain attribute read); ``credits``,
    ``atask`` and ``started`` belong to the worker thread; ``ended`` to the caller's.
    """

    __slots__ = (
        "atask",
        "context",
        "credit_window",
        "credits",
        "inbox",
        "runner",
        "started",
        "state",
        "unqueue",
        "worker",
    )

    def __init__(
        self,
        task_id: int,
        runner: TaskRunner,
        events: TaskEvents,
        credit_window: int,
        forget: Callable[[_ThreadTask], None],
        unqueue: Callable[[_ThreadTask], bool],
    ) -> None:
        # The executor's callbacks (forget, unqueue) hold it while the task lives:
        # its threads hold it only weakly.
        super().__init__(task_id, events, forget)
        self.unqueue = unqueue
        self.credit_window = credit_window
        self.runner = runner
        self.context = contextvars.copy_context()
        self.state = _PENDING
        self.worker: _ThreadWorker | None = None
        self.credits: Credits | None = None
        self.atask: asyncio.Task[None] | None = None
        self.started = False
        self.inbox: Inbox | None = None

    # -- worker thread: a waitable task's inbox callbacks ----------------------------------

    def parked(self, received: int, timeout: float | None) -> None:
        worker = self.worker
        assert worker is not None
        executor = worker._executor()
        assert executor is not None  # self.forget holds it
        executor._secede(worker)
        worker.post(self, _PARKED, (received, timeout))

    def received(self, count: int) -> None:
        worker = self.worker
        assert worker is not None
        worker.post(self, _RECEIVED, count)

    # -- worker thread ---------------------------------------------------------------------

    def start_in_worker(self) -> None:
        """Worker thread, a callback of its loop: call the runner; drive what it
        returned in an asyncio task if it must be awaited or iterated."""
        worker = self.worker
        assert worker is not None
        if self.cancel_requested:
            worker.end(self, _ERROR, asyncio.CancelledError())
            return
        try:
            finished, result = self.context.run(run_sync_step, self.runner)
        except BaseException as error:  # the thread is ours: any error is the task's
            worker.end(self, _ERROR, error)
            return
        if finished:
            worker.end(self, _FINAL, result)
            return
        self.credits = Credits(self.credit_window)
        self.atask = self.context.run(worker.loop.create_task, self._run(result))

    async def _run(self, result: Any) -> None:
        """Worker thread: drive ``result`` to its FINAL value and report the end."""
        worker = self.worker
        assert worker is not None
        if self.cancel_requested:
            # Interleaving: cancelled before this task's first step. Close the runner's
            # coroutine, never awaited, so it does not warn.
            if inspect.iscoroutine(result):
                result.close()
            worker.end(self, _ERROR, asyncio.CancelledError())
            return
        self.started = True
        post = worker.post

        def emit(values: list[Any]) -> None:
            if self.cancel_requested:
                # Stop a sync generator (which awaits only between batches) at once.
                raise asyncio.CancelledError
            post(self, _INTERMEDIATE, values)

        try:
            value = await drive(result, emit, self.credits, yield_every=YIELD_EVERY)
        except asyncio.CancelledError as cancelled:
            worker.end(self, _ERROR, cancelled)
        except GeneratorExit:
            raise
        except BaseException as error:
            worker.end(self, _ERROR, error)
        else:
            worker.end(self, _FINAL, value)

    def cancel_in_worker(self) -> None:
        """Worker thread: cancel the asyncio task driving the runner, if it runs.
        (Not started yet: :meth:`_run` sees ``cancel_requested`` at its first step.)"""
        atask = self.atask
        if self.started and atask is not None and not atask.done():
            atask.cancel()

    # -- caller's thread: the TaskHandle ------------------------------------------------------

    def report_start(self) -> None:
        """Caller's thread: the task was handed to a thread (``TaskEvents.task_started``)."""
        if not self.ended:
            self.events.task_started(self.task_id)

    def cancel(self, error: BaseException | None = None) -> None:
        if not self.request_cancel(error):
            return
        if self.unqueue(self):
            # It never ran and never will: it ends now.
            self.report_end(asyncio.CancelledError())
            return
        if self.inbox is not None:
            self.inbox.abort()  # a sync runner blocked in receive_blocking() wakes
        worker = self.worker
        assert worker is not None
        try:
            worker.loop.call_soon_threadsafe(self.cancel_in_worker)
        except RuntimeError:
            pass  # the thread's loop is closed: the task is long over

    def ack(self, count: int = 1) -> None:
        worker = self.worker
        if worker is not None and not self.ended and not self.cancel_requested:
            worker.post_ack(self, count)

    def send(self, message: Any) -> None:
        assert self.inbox is not None
        self.inbox.put(message)

    def resume(self, timed_out: bool = False) -> None:
        """Caller's thread: the parked task goes on; its thread rejoins the pool."""
        assert self.inbox is not None
        worker = self.worker
        assert worker is not None
        executor = worker._executor()
        if executor is not None:
            executor._rejoin(worker)
        self.inbox.grant(timed_out)
