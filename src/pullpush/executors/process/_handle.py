"""The parent's side of one task: its :class:`TaskHandle`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._base import TaskEvents
from . import _protocol as wire

if TYPE_CHECKING:
    from ._executor import ProcessExecutor
    from ._spawn import _Worker


_Call = tuple[tuple[Any, ...], "int | None", "wire.Blob | None"]
"""A task's call, ready to be sent: the message, and the function it needs defined in
the worker first (id and blob), if any."""


class _ProcTask:
    """The parent's side of one task: a :class:`TaskHandle`."""

    __slots__ = (
        "acked",
        "call",
        "cancel_error",
        "crashes",
        "credited",
        "done",
        "early",
        "escalation",
        "estimate",
        "events",
        "executor",
        "intermediates",
        "kind",
        "received",
        "seen_running",
        "seq",
        "size",
        "starts",
        "streamed",
        "task_id",
        "wire_id",
        "worker",
    )

    def __init__(
        self, executor: ProcessExecutor, task_id: int, wire_id: int, events: TaskEvents
    ) -> None:
        self.executor = executor
        # task_id is the submitter's (runners number their own tasks, so two runners
        # sharing an executor reuse ids); wire_id is unique in this executor and is
        # what messages, worker tables and the shared running array use.
        self.task_id = task_id
        self.wire_id = wire_id
        self.events = events
        # What reports the task's INTERMEDIATE batches (looked up at the first one).
        self.intermediates: Callable[[int, list[Any]], None] | None = None
        # What reports the task's start (TaskEvents.task_started); None once reported,
        # or when the submitter does not listen.
        self.starts: Callable[[int], None] | None = (
            getattr(events, "task_started", None)
            if getattr(events, "listens_for_starts", True)
            else None
        )
        # Whether its clock was started at submit (no worker was ready then).
        self.early = False
        self.call: _Call | None = None
        self.worker: _Worker | None = None
        # Invariant: done once the terminal event was reported; nothing after that.
        self.done = False
        self.cancel_error: BaseException | None = None
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

    def cancel(self, error: BaseException | None = None) -> None:
        self.executor._cancel(self, error)

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
            self.executor._schedule_flush(worker)
