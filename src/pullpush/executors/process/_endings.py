"""How a task leaves the process executor: :meth:`_forget` (its handle's ``forget``:
the bookkeeping of its worker, its successor or predecessor in the capacity hand-off,
its region of the payload arena), :meth:`_fail` (ended with an error) and
:meth:`_stop` (its handle's ``stop``: cancelled, pending or in a worker)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from . import _protocol as wire

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from . import _shm
    from ._handle import _ProcTask
    from ._spawn import _Worker


class _EndingsMixin:
    """The executor's task ends: forgetting, failing and stopping a task."""

    if TYPE_CHECKING:  # what this room uses of the executor
        cancel_grace: float
        _arena: _shm.Arena | None
        _loop: asyncio.AbstractEventLoop | None
        _pending: deque[_ProcTask]

        def _flush(self, worker: _Worker) -> None: ...
        def _escalate(self, task: _ProcTask) -> None: ...
        def _callback_failed(self, what: str, error: BaseException) -> None: ...

    def _forget(self, task: _ProcTask) -> None:
        """``task`` ended (its handle's ``forget``): it no longer counts in its worker,
        its successor, if any, no longer waits for it (or, if it was itself waiting for
        one, waits for that one), and its region of the payload arena is free (its
        worker copied the call out of it, or died)."""
        after, successor = task.after, task.successor
        region, task.region = task.region, None
        if region is not None and self._arena is not None:
            self._arena.free(*region)
        worker = task.worker
        if after is not None or successor is not None:
            if worker is not None:
                if after is not None:
                    worker.successors -= 1  # it waited here, and leaves
                if successor is not None and after is None and successor.worker is worker:
                    worker.successors -= 1  # its successor runs now
            if after is not None:
                after.successor = successor
            if successor is not None:
                successor.after = after
            task.after = task.successor = None
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
        if task.parked and worker is not None:
            task.parked = False
            worker.waiting -= 1
        task.worker = None
        if task.escalation is not None:
            task.escalation.cancel()
            task.escalation = None

    def _fail(self, task: _ProcTask, error: BaseException | None) -> None:
        """End ``task`` with ``error`` (after a cancel: the cancel's, ``error`` its
        context), unless it ended already."""
        if task.ended:
            return
        if task.worker is not None:
            task.worker.tasks.pop(task.wire_id, None)
        try:
            task.report_end(error)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as failure:  # it ended all the same
            self._callback_failed(f"task_error of task {task.task_id}", failure)

    # -- cancellation ------------------------------------------------------------------------------

    def _stop(self, task: _ProcTask) -> None:
        """Stop a cancelled task (its handle's ``stop``): a pending one ends now; one
        sent to a worker is cancelled there, and its worker terminated should it not
        end within ``cancel_grace`` (see :meth:`_escalate`)."""
        worker = task.worker
        if worker is None:
            with contextlib.suppress(ValueError):
                self._pending.remove(task)
            self._fail(task, None)
            return
        worker.writer.send((wire.CANCEL, task.wire_id))
        self._flush(worker)
        if task.escalation is None and self._loop is not None:
            task.seen_running = task.wire_id in worker.running[:]
            task.escalation = self._loop.call_later(self.cancel_grace, self._escalate, task)
