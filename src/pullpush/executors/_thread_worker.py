"""The thread executor's worker side: :class:`_ThreadWorker`, one thread running its
own event loop, and :class:`_ThreadTask`, a task it runs (the runner's handle); see
:mod:`pullpush.executors._thread` for the data flow between them and the caller."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..runners._envelope import EnvelopeType
from ._base import BaseTaskHandle, TaskEvents, TaskRunner
from ._drive import Credits, drive, run_sync_step
from ._inbox import Inbox

if TYPE_CHECKING:
    from ._thread import ThreadExecutor

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


def wind_down(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on a private ``loop`` (stopped) and finish its async
    generators, before it is closed."""
    leftovers = asyncio.all_tasks(loop)
    for leftover in leftovers:
        leftover.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


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
            wind_down(loop)
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
