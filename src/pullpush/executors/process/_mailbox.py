"""A waitable task's context inside a worker process: the messages the parent sent
it (the worker hands it each MESSAGE and RESUME it reads), and the wait of a
``receive`` that found none, which takes the task out of the worker's count of
running tasks until RESUME."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ..._exceptions import NoMessageError, WaitLimitError
from ...runners._waitable import TaskContext
from . import _protocol as wire
from ._pickling import loads_blob
from ._report import unpickling_error

if TYPE_CHECKING:
    from ._worker import _Worker

__all__ = ["_BadMessage", "_Inbox"]


class _BadMessage:
    """Stands in for a message that could not be unpickled: receiving it raises."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<message that could not be unpickled: {self.error!r}>"


class _Inbox(TaskContext):
    """A waitable task's context in this worker: the messages the parent sent it.

    A ``receive`` that finds none *parks*: it says PARKED, gives its slot's place in
    the count of running tasks back (the task stays in its slot of the shared
    ``running`` array, so a crash still fails it) and awaits a future -- no CPU --
    until RESUME.
    """

    __slots__ = ("messages", "parked", "taken", "waiter", "wire_id", "worker")

    def __init__(self, worker: _Worker, wire_id: int, task_id: int) -> None:
        super().__init__(task_id)
        self.worker = worker
        self.wire_id = wire_id
        self.messages: deque[Any] = deque()
        self.taken = 0
        self.parked = False
        self.waiter: asyncio.Future[None] | None = None

    def put(self, kind: int, payload: Any) -> None:
        """A MESSAGE (raw ``payload``) or MESSAGE_BLOB (pickled) arrived."""
        if kind == wire.MESSAGE_BLOB:
            try:
                payload = loads_blob(payload)
            except BaseException as error:
                payload = _BadMessage(unpickling_error("a message", error))
        self.messages.append(payload)

    def park(self, timeout: float | None) -> None:
        """Say PARKED and leave the worker's count of running tasks."""
        worker = self.worker
        if worker.waiting >= worker.max_waiting:
            raise WaitLimitError(
                f"this worker hosts max_waiting={worker.max_waiting} waiting tasks already"
            )
        self.parked = True
        worker.waiting += 1
        worker.active -= 1
        worker.writer.send((wire.PARKED, self.wire_id, self.taken, timeout))
        worker.note_output()
        worker.loop.call_soon(worker.start_queued)  # its place goes to a queued call

    def unpark(self) -> None:
        self.parked = False
        self.worker.waiting -= 1
        self.worker.active += 1

    def resume(self) -> None:
        """RESUME: the parked receive goes on (counted as running again)."""
        if self.parked and self.waiter is not None:
            self.unpark()
            if not self.waiter.done():
                self.waiter.set_result(None)

    def _take(self) -> Any:
        message = self.messages.popleft()
        self.taken += 1
        self.worker.writer.send((wire.RECEIVED, self.wire_id, self.taken))
        self.worker.note_output()
        if message.__class__ is _BadMessage:
            raise message.error  # taken all the same: it will not come again
        return message

    def receive_nowait(self) -> Any:
        if not self.messages:
            raise NoMessageError(f"no message waiting for task {self.task_id}")
        return self._take()

    async def receive(self, timeout: float | None = None) -> Any:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        if self.messages:
            return self._take()
        self.park(timeout)
        self.waiter = waiter = self.worker.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None
            if self.parked:  # cancelled while parked: it counts as running again
                self.unpark()
        if not self.messages:
            raise TimeoutError(f"task {self.task_id} received no message within {timeout}s")
        return self._take()
