"""Decoding result messages into :class:`TaskEvents` calls."""

from __future__ import annotations

import asyncio
import pickle
from typing import TYPE_CHECKING, Any, NamedTuple

from ..._exceptions import (
    RemoteTaskError,
    RemoteTraceback,
    TaskPicklingError,
)
from . import _pickling as pickling
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
        def _dispatch(self) -> None: ...
        def _fail(self, task: _ProcTask, error: BaseException | None) -> None: ...
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
        """Handle one message, its fields named where it is decoded (the layouts are
        ``_protocol.py``'s). A task's end goes through :meth:`_finish`; what can fail in
        decoding (unpickling runs the task's code) becomes the task's error; anything
        else that raises is :meth:`_message_failed`'s."""
        kind = message[0]
        if kind == wire.INTERMEDIATE:
            _, wire_id, values = message
            task = worker.tasks.get(wire_id)
            if task is not None and not task.ended:
                task.streamed = True
                task.received += len(values)
                task.events.task_intermediates(task.task_id, values)
        elif kind == wire.FINAL:
            _, wire_id, value, seconds, peak_mib = message
            self._finish(worker, wire_id, None, value, None, seconds, peak_mib)
        elif kind == wire.INTERMEDIATE_BLOB:
            _, wire_id, blob, type_name = message
            task = worker.tasks.get(wire_id)
            if task is not None and not task.ended:
                task.streamed = True
                task.received += 1
                try:
                    value = pickling.loads_blob(blob)
                except BaseException as error:  # the task's code ran: its failure
                    self._unpickling_failed(task, f"a value ({type_name})", error)
                else:
                    task.events.task_intermediate(task.task_id, value)
        elif kind == wire.FINAL_BLOB:
            _, wire_id, blob, type_name, seconds, peak_mib = message
            self._finish(
                worker, wire_id, None, blob, f"the result ({type_name})", seconds, peak_mib
            )
        elif kind == wire.ERROR:
            _, wire_id, blob, type_name, text, traceback_text, peak_mib, attributes = message
            remote = _RemoteError(blob, type_name, text, traceback_text, attributes)
            self._finish(worker, wire_id, remote, None, None, None, peak_mib)
        elif kind == wire.PARKED:
            _, wire_id, received, timeout = message
            task = worker.tasks.get(wire_id)
            if task is not None and not task.ended:
                self._resident(task)
                task.parked = True
                worker.waiting += 1
                task.events.task_parked(task.task_id, received, timeout)
        elif kind == wire.RECEIVED:
            task = worker.tasks.get(message[1])
            if task is not None and not task.ended:
                self._resident(task)
                task.events.task_received(task.task_id, message[2])
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
            _, type_name, text, traceback_text = message
            self._init_failures += 1
            failure = RemoteTaskError(type_name, text)
            failure.__cause__ = RemoteTraceback(traceback_text)
            if self._init_failures >= _INIT_FAILURES_ALLOWED:
                self._break(failure)

    @staticmethod
    def _resident(task: _ProcTask) -> None:
        """``task`` started in its worker: it will not be sent elsewhere again."""
        if not task.resident:
            task.resident = True
            if task.messages:
                task.messages.clear()

    def _finish(
        self,
        worker: _Worker,
        wire_id: int,
        error: _RemoteError | None,
        value: Any,
        blob_of: str | None,
        seconds: float | None,
        peak_mib: float | None,
    ) -> None:
        """A task's end (FINAL, FINAL_BLOB or ERROR): its ``error``, else its ``value``
        (a blob of what ``blob_of`` names, unpickled here unless a cancel wins anyway).
        Its worker's accounting and retirement come before the task's ``events`` are
        called, so that a callback that raises leaves nothing half done."""
        task = worker.tasks.pop(wire_id, None)
        if task is None:
            return
        if seconds is not None and self._adaptive:
            self._learn(task, seconds)
        self._retire_if_idle(worker)
        failure: BaseException | None = None
        if error is not None:
            failure = error.decode(task.task_id)
        elif blob_of is not None and not task.cancel_requested:
            try:
                value = pickling.loads_blob(value)
            except BaseException as unpickling:  # the task's code ran: its failure
                failure = _unpickling_error(task, blob_of, unpickling)
        if peak_mib is not None:
            self._report_memory(task, peak_mib)
        task.report_end(failure, value)  # after a cancel: the cancel's error

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
        if task is not None and not task.ended:
            if kind in (wire.INTERMEDIATE, wire.INTERMEDIATE_BLOB):
                if not task.cancel_requested:
                    task.cancel(error)
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
        """A value of a running task could not be unpickled: fail the task (this error
        wins over an earlier cancel's)."""
        failure = _unpickling_error(task, what, error)
        task.cancel(failure)
        task.cancel_error = failure


class _RemoteError(NamedTuple):
    """An ERROR message's exception, as it travels."""

    blob: bytes | str
    """The pickled exception, or why the worker could not pickle it."""
    type_name: str
    text: str
    traceback_text: str
    attributes: Any

    def decode(self, task_id: int) -> BaseException:
        """The exception, its worker's traceback as ``__cause__``. Total: an exception
        that cannot be unpickled, or unpickles as something else, becomes a
        :class:`RemoteTaskError` that says why."""
        blob, type_name, text, traceback_text, attributes = self
        error: BaseException
        if not isinstance(blob, bytes):  # why the worker could not pickle it
            error = TaskPicklingError(
                f"task {task_id} raised {type_name}: {text} -- and that exception could "
                f"not be pickled: {blob}"
            )
        else:
            try:
                unpickled = pickle.loads(blob)
            except BaseException as unpickling:  # the task's code ran: its failure
                error = RemoteTaskError(
                    type_name,
                    text,
                    pickling.failure_reason(unpickling, "unpickling it"),
                    attributes,
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
            error.__cause__ = RemoteTraceback(traceback_text)
        except BaseException as chaining:  # an exception class that refuses a __cause__
            error = RemoteTaskError(
                type_name,
                text,
                pickling.failure_reason(chaining, "setting its __cause__"),
                attributes,
            )
            error.__cause__ = RemoteTraceback(traceback_text)
        return error


def _unpickling_error(task: _ProcTask, what: str, error: BaseException) -> TaskPicklingError:
    failure = TaskPicklingError(
        f"task {task.task_id}: {what} could not be unpickled in the parent: "
        f"{pickling.failure_reason(error, 'unpickling it')}"
    )
    failure.__cause__ = error
    return failure
