"""Decoding result messages into :class:`TaskEvents` calls."""

from __future__ import annotations

import asyncio
import pickle
from typing import TYPE_CHECKING, Any

from ..._exceptions import (
    RemoteTaskError,
    RemoteTraceback,
    TaskPicklingError,
)
from .._base import intermediates_reporter
from . import _protocol as wire
from ._spawn import _INIT_FAILURES_ALLOWED, _READY, _RETIRING, _STARTING

if TYPE_CHECKING:
    from ._handle import _ProcTask
    from ._spawn import _Worker


# The messages about one task (its wire id second), by name.
_TASK_MESSAGES = {
    wire.INTERMEDIATE: "INTERMEDIATE",
    wire.INTERMEDIATE_BLOB: "INTERMEDIATE",
    wire.FINAL: "FINAL",
    wire.FINAL_BLOB: "FINAL",
    wire.ERROR: "ERROR",
}


class _ResultsMixin:
    """The executor's result handling."""

    if TYPE_CHECKING:  # what this room uses of the executor
        _adaptive: bool
        _early_deaths: int
        _init_failures: int
        _loop: asyncio.AbstractEventLoop | None

        def _break(self, error: BaseException) -> None: ...
        def _cancel(self, task: _ProcTask, error: BaseException | None) -> None: ...
        def _dispatch(self) -> None: ...
        def _end(self, task: _ProcTask) -> None: ...
        def _fail(self, task: _ProcTask, error: BaseException) -> None: ...
        def _learn(self, task: _ProcTask, seconds: float) -> None: ...
        def _report_start(self, task: _ProcTask) -> None: ...
        def _retire_if_idle(self, worker: _Worker) -> None: ...

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


def _unpickling_error(task: _ProcTask, what: str, error: BaseException) -> TaskPicklingError:
    failure = TaskPicklingError(
        f"task {task.task_id}: {what} could not be unpickled in the parent: "
        f"{wire.failure_reason(error, 'unpickling it')}"
    )
    failure.__cause__ = error
    return failure
