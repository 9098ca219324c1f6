"""The parent's side of one task: its :class:`TaskHandle`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._base import BaseTaskHandle, as_task_events
from . import _pickling as pickling
from . import _protocol as wire
from ._report import pickling_error

if TYPE_CHECKING:
    from ._spawn import _Worker


_Call = tuple[tuple[Any, ...], "int | None", "pickling.Blob | None"]
"""A task's call, ready to be sent: the message, and the function it needs defined in
the worker first (id and blob), if any."""


def send_message(worker: _Worker, message: tuple[Any, ...]) -> None:
    """Queue a MESSAGE or MESSAGE_BLOB on ``worker``'s call pipe (a large blob alone)."""
    if message[0] == wire.MESSAGE_BLOB and pickling.is_large(message[2]):
        worker.writer.send_alone(message)
    else:
        worker.writer.send(message)


class _ProcTask(BaseTaskHandle):
    """The parent's side of one task: a :class:`TaskHandle`. Its end, and the rule that
    a cancel wins, are :class:`BaseTaskHandle`'s; it reaches its executor through
    callbacks only: ``forget`` (the task ended), ``stop`` (stop it: a cancel) and
    ``flush`` (send what was queued on its worker's call pipe)."""

    __slots__ = (
        "acked",
        "after",
        "call",
        "crashes",
        "credited",
        "early",
        "escalation",
        "estimate",
        "flush",
        "kind",
        "messages",
        "parked",
        "received",
        "region",
        "resident",
        "seen_running",
        "seq",
        "size",
        "starts",
        "stop",
        "streamed",
        "successor",
        "wire_id",
        "worker",
    )

    def __init__(
        self,
        task_id: int,
        wire_id: int,
        events: Any,
        forget: Callable[[_ProcTask], None],
        stop: Callable[[_ProcTask], None],
        flush: Callable[[_Worker], None],
    ) -> None:
        super().__init__(task_id, as_task_events(events), forget)
        self.stop = stop
        self.flush = flush
        # task_id is the submitter's (runners number their own tasks, so two runners
        # sharing an executor reuse ids); wire_id is unique in this executor and is
        # what messages, worker tables and the shared running array use.
        self.wire_id = wire_id
        # What reports the task's start (TaskEvents.task_started); None once reported,
        # or when the submitter does not listen (or, not a TaskEvents, has no
        # task_started: then no WATCH message is sent for it).
        self.starts: Callable[[int], None] | None = (
            getattr(events, "task_started", None)
            if getattr(events, "listens_for_starts", True)
            else None
        )
        # Whether its clock was started at submit (no worker was ready then).
        self.early = False
        self.call: _Call | None = None
        self.worker: _Worker | None = None
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
        # The payload arena's region holding its call's buffers, (offset, size), from
        # its first send until it ended (a call sent again reuses it); None: none.
        self.region: tuple[int, int] | None = None
        # A waitable task's messages, encoded, in send order (None: not waitable): all
        # of them go after its CALL, to whichever worker it is sent (again, after a
        # crash before it started). Whether it is parked in receive() in its worker.
        self.messages: list[tuple[Any, ...]] | None = None
        self.parked = False
        # Whether it is known to have started in its worker (it said PARKED or
        # RECEIVED): then it never runs elsewhere, and its messages need no copy.
        self.resident = False
        # The capacity hand-off (``submit(after=)``): the task it must not start
        # before (until that one ends), and the task queued behind it.
        self.after: _ProcTask | None = None
        self.successor: _ProcTask | None = None

    def send(self, message: Any) -> None:
        """Queue ``message`` for the task (after its CALL, on its worker's call pipe)."""
        assert self.messages is not None
        if type(message) in wire.RAW_TYPES and not pickling.large_raw((message,)):
            encoded: tuple[Any, ...] = (wire.MESSAGE, self.wire_id, message)
        else:
            try:
                blob = pickling.dumps_blob(pickling.wrap_large(message))
            except BaseException as error:
                raise pickling_error("a message", error, message) from None
            encoded = (wire.MESSAGE_BLOB, self.wire_id, blob)
        if not self.resident:
            self.messages.append(encoded)
        worker = self.worker
        if worker is not None:
            send_message(worker, encoded)
            self.flush(worker)

    def resume(self, timed_out: bool = False) -> None:
        """The parked task goes on (the runner holds a slot for it again)."""
        worker = self.worker
        if worker is None:
            return
        if self.parked:
            self.parked = False
            worker.waiting -= 1
        worker.writer.send((wire.RESUME, self.wire_id, timed_out))
        self.flush(worker)

    def cancel(self, error: BaseException | None = None) -> None:
        if self.request_cancel(error):
            self.stop(self)

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
            self.flush(worker)
