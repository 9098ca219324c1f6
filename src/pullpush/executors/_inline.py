"""The inline executor: task runners run on the caller's event loop (FireFoundry's
semantics). A plain function runs synchronously when submitted; anything that must be
awaited or iterated gets one asyncio task."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any

from .._exceptions import NotWaitableError
from .._util import check_int
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
from ._drive import Credits, drive, needs_driving, run_sync_step
from ._inbox import Inbox

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Run task runners on the caller's event loop.

    A runner that returns a plain value runs to completion inside ``submit`` (it is
    the caller's loop either way); coroutines and (async) generators run in one
    asyncio task each. A sync generator runner blocks the loop between its yields,
    as any synchronous code on the loop does.

    Waitable task runners (:func:`~pullpush.waitable`) get an inbox; a task parked in
    ``await ctx.receive()`` is an asyncio task waiting on a future, costing nothing.
    (``receive_blocking`` is refused here: it would block the loop.)
    """

    name = "inline"
    runs_waitables = True

    def __init__(self, *, credit_window: int = 256) -> None:
        super().__init__()
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        self._tasks: set[_InlineTask] = set()

    def __repr__(self) -> str:
        return f"<InlineExecutor running={len(self._tasks)}>"

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        if self._closed:
            raise ExecutorClosedError("InlineExecutor is closed")
        events = as_task_events(events)
        inbox: Inbox | None = None
        if runner.__class__ is Waitable:
            if not events.accepts_messages:
                raise NotWaitableError(
                    f"{runner!r} is waitable: its receiver must accept messages "
                    "(run it in a pool runner)"
                )
            inbox = _inbox(task_id, events)
            runner = runner.bind(inbox)
        task = _InlineTask(self, task_id, runner, events, self._tasks.discard)
        task.inbox = inbox
        if task.task is not None:
            self._tasks.add(task)
        return task

    async def _aclose(self) -> None:
        tasks = [t.task for t in self._tasks if t.task is not None]
        for task in list(self._tasks):
            task.cancel(ExecutorClosedError("InlineExecutor closed while the task ran"))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _inbox(task_id: int, events: TaskEvents) -> Inbox:
    def parked(received: int, timeout: float | None) -> None:
        events.task_parked(task_id, received, timeout)

    def received(count: int) -> None:
        events.task_received(task_id, count)

    return Inbox(task_id, parked, received)


class _InlineTask(BaseTaskHandle):
    """One task on the loop: a :class:`TaskHandle` (a ``MessageHandle`` for a
    waitable task)."""

    __slots__ = ("_credit_window", "_credits", "_result", "_started", "inbox", "task")

    def __init__(
        self,
        executor: InlineExecutor,
        task_id: int,
        runner: TaskRunner,
        events: TaskEvents,
        forget: Callable[[Any], None],
    ) -> None:
        super().__init__(task_id, events, forget)
        self._credit_window = executor.credit_window
        self._credits: Credits | None = None
        self._started = False
        self.inbox: Inbox | None = None
        self.task: asyncio.Task[None] | None = None
        try:
            finished, result = run_sync_step(runner)
        except (Exception, SystemExit) as error:
            self.report_end(error)
            return
        if finished:
            self.report_end(None, result)
            return
        self._result = result
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._started = True
        result = self._result
        try:
            if type(result) is CoroutineType:
                # The common case, a coroutine function's runner: awaited right here,
                # driven further only if it resolved to a stream.
                value = await result
                if needs_driving(value):
                    value = await self._drive(value)
            else:
                value = await self._drive(result)
        except (asyncio.CancelledError, Exception, SystemExit) as error:
            # Cancelled, the runner may also have caught the CancelledError and
            # returned, or raised while stopping (a generator's ``finally``): the
            # cancel wins either way (BaseTaskHandle.report_end).
            self.report_end(error)
        else:
            self.report_end(None, value)

    def _drive(self, result: Any) -> Coroutine[Any, Any, Any]:
        """Drive a stream (or awaitable) under a credit window: what ``ack`` feeds."""
        task_id, report = self.task_id, self.events.task_intermediates

        def emit(values: list[Any]) -> None:
            report(task_id, values)

        self._credits = Credits(self._credit_window)
        return drive(result, emit, self._credits)

    def cancel(self, error: BaseException | None = None) -> None:
        task = self.task
        if task is None or task.done():
            return
        self.request_cancel(error)
        task.cancel()
        if not self._started:
            # Interleaving: cancelled before its first step, the task never runs _run,
            # so its outcome is reported here, and the runner's own coroutine is
            # closed so it does not warn that it was never awaited.
            close = getattr(self._result, "close", None)
            if close is not None and inspect.iscoroutine(self._result):
                close()
            self.report_end(None)

    def ack(self, count: int = 1) -> None:
        if self._credits is not None:
            self._credits.ack(count)

    def send(self, message: Any) -> None:
        assert self.inbox is not None
        self.inbox.put(message)

    def resume(self, timed_out: bool = False) -> None:
        assert self.inbox is not None
        self.inbox.grant(timed_out)
