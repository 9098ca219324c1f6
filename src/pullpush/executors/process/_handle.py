"""The parent's side of one task: its :class:`TaskHandle`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._base import BaseTaskHandle, as_task_events
from . import _pickling as pickling
from . import _protocol as wire

if TYPE_CHECKING:
    from ._spawn import _Worker


_Call = tuple[tuple[Any, ...], "int | None", "pickling.Blob | None"]
"""A task's call, ready to be sent: the message, and the function it needs defined in
the worker first (id and blob), if any."""


class _ProcTask(BaseTaskHandle):
    """The parent's side of one task: a :class:`TaskHandle`. Its end, and the rule that
    a cancel wins, are :class:`BaseTaskHandle`'s; it reaches its executor through
    callbacks only: ``forget`` (the task ended), ``stop`` (stop it: a cancel) and
    ``flush`` (send what was queued on its worker's call pipe)."""

    __slots__ = (
        "acked",
        "call",
        "crashes",
        "credited",
        "early",
        "escalation",
        "estimate",
        "flush",
        "kind",
        "received",
        "region",
        "seen_running",
        "seq",
        "size",
        "starts",
        "stop",
        "streamed",
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
