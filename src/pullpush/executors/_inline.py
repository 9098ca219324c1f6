"""The inline executor: task runners run on the caller's event loop (FireFoundry's
semantics). A plain function runs synchronously when submitted; anything that must be
awaited or iterated gets one asyncio task."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from types import CoroutineType
from typing import Any

from .._util import check_int
from ._base import (
    Executor,
    ExecutorClosedError,
    TaskEvents,
    TaskHandle,
    TaskRunner,
    intermediates_reporter,
)
from ._drive import Credits, drive, needs_driving, run_sync_step

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Run task runners on the caller's event loop.

    A runner that returns a plain value runs to completion inside ``submit`` (it is
    the caller's loop either way); coroutines and (async) generators run in one
    asyncio task each. A sync generator runner blocks the loop between its yields,
    as any synchronous code on the loop does.
    """

    name = "inline"

    def __init__(self, *, credit_window: int = 256) -> None:
        super().__init__()
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        self._tasks: set[_InlineTask] = set()

    def __repr__(self) -> str:
        return f"<InlineExecutor running={len(self._tasks)}>"

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        if self._closed:
            raise ExecutorClosedError("InlineExecutor is closed")
        return _InlineTask(self, task_id, runner, events)

    async def _aclose(self) -> None:
        tasks = [t.task for t in self._tasks if t.task is not None]
        for task in list(self._tasks):
            task.cancel(ExecutorClosedError("InlineExecutor closed while the task ran"))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _InlineTask:
    """One task on the loop: a :class:`TaskHandle`."""

    __slots__ = (
        "_cancel_error",
        "_cancelled",
        "_credits",
        "_events",
        "_executor",
        "_result",
        "_started",
        "task",
        "task_id",
    )

    def __init__(
        self, executor: InlineExecutor, task_id: int, runner: TaskRunner, events: TaskEvents
    ) -> None:
        self.task_id = task_id
        self._events = events
        self._executor = executor
        self._credits: Credits | None = None
        self._cancel_error: BaseException | None = None
        self._cancelled = False
        self._started = False
        self.task: asyncio.Task[None] | None = None
        try:
            finished, result = run_sync_step(runner)
        except (Exception, SystemExit) as error:
            events.task_error(task_id, error)
            return
        if finished:
            events.task_final(task_id, result)
            return
        self._result = result
        executor._tasks.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._started = True
        events, task_id = self._events, self.task_id
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
        except asyncio.CancelledError as cancelled:
            error = self._cancel_error
            events.task_error(task_id, error if error is not None else cancelled)
        except (Exception, SystemExit) as error:
            if self._cancelled:
                self._end_cancelled(error)
            else:
                events.task_error(task_id, error)
        else:
            if self._cancelled:
                self._end_cancelled(None)
            else:
                events.task_final(task_id, value)
        finally:
            self._executor._tasks.discard(self)

    def _drive(self, result: Any) -> Coroutine[Any, Any, Any]:
        """Drive a stream (or awaitable) under a credit window: what ``ack`` feeds."""
        events, task_id = self._events, self.task_id
        report = intermediates_reporter(events)

        def emit(values: list[Any]) -> None:
            report(task_id, values)

        self._credits = Credits(self._executor.credit_window)
        return drive(result, emit, self._credits)

    def _end_cancelled(self, own_error: BaseException | None) -> None:
        """Interleaving: cancelled, the runner did not end with CancelledError -- it
        caught it and returned, or raised while stopping (a generator's ``finally``).
        The cancel wins, as the executor contract says: the task ends with the cancel's
        error, the runner's own error as its context."""
        error = self._cancel_error if self._cancel_error is not None else asyncio.CancelledError()
        if own_error is not None and error.__context__ is None:
            error.__context__ = own_error
        self._events.task_error(self.task_id, error)

    def cancel(self, error: BaseException | None = None) -> None:
        task = self.task
        if task is None or task.done():
            return
        if self._cancel_error is None:
            self._cancel_error = error
        self._cancelled = True
        task.cancel()
        if not self._started:
            # Interleaving: cancelled before its first step, the task never runs _run,
            # so its outcome is reported here, and the runner's own coroutine is
            # closed so it does not warn that it was never awaited.
            close = getattr(self._result, "close", None)
            if close is not None and inspect.iscoroutine(self._result):
                close()
            self._executor._tasks.discard(self)
            self._events.task_error(
                self.task_id, error if error is not None else asyncio.CancelledError()
            )

    def ack(self, count: int = 1) -> None:
        if self._credits is not None:
            self._credits.ack(count)
