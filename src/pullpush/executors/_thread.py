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
import os
import threading
from collections import deque

from .._exceptions import NotWaitableError, WaitLimitError
from .._util import check_int
from ..capacity import CapacitySource
from ..runners._waitable import Waitable
from ._base import (
    Executor,
    ExecutorClosedError,
    TaskEvents,
    TaskHandle,
    TaskRunner,
    as_task_events,
)
from ._inbox import Inbox
from ._thread_worker import (
    _DROPPED,
    _PENDING,
    _STARTED,
    _fail,
    _resolve,
    _ThreadTask,
    _ThreadWorker,
)

__all__ = ["ThreadExecutor"]


def default_max_workers() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity masks on this platform
        return max(1, os.cpu_count() or 1)


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
