"""The capacity-limited task pool runners.

A runner pulls task runners from a source, holds capacity for each task while it
runs, hands it to an executor (inline, thread, process, ray) and streams what the
tasks produce as :class:`TaskProgressEnvelope` objects, in completion order.

Everything a runner does happens on the caller's event loop; it never sees a pipe.
Two pieces cooperate:

* the **dispatcher**, one asyncio task, which loops: wait for room in the results
  buffer, take the next task from the source, acquire an executor slot and then the
  task's capacity, submit it. It runs ahead of the consumer (eager execution) until
  ``max_unread`` envelopes wait unread;
* the **consumer side**, :meth:`run_tasks` (or :meth:`run_batches`, which hands them
  over in batches), which yields the envelopes the executor reported, grants the
  tasks flow-control credits as their INTERMEDIATE envelopes are read, and on exit
  (``break``, ``aclose()``, cancellation, ``stop_on_error``) cancels the dispatcher
  and every task in flight and waits until all capacity is back.

Every task started ends in exactly one FINAL or ERROR envelope, unless the consumer
stops early. Task ids increase in start order, from 0.

Waitable tasks (:func:`~pullpush.waitable`) add a third piece, the **resumer**, which
gives a parked task its capacity back when a message comes (:mod:`._waiting`). A
process worker need not wait for its next task: the **capacity hand-off** queues a
task behind another of the runner's, holding nothing, and passes the first's slot and
unit to it when it ends (:mod:`._handoff`). The consumer side is in :mod:`._consumer`,
the dispatcher's capacity waits and their stall warning in :mod:`._stall`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any, Generic

from .._exceptions import (
    NotWaitableError,
    TaskTimeoutError,
)
from .._sync import ParkingLot
from .._util import check_int, check_seconds
from ..capacity import CapacitySource
from ..executors import Executor, ExecutorSpec, TaskEvents
from ..executors._registry import check_executor_spec, make_executor
from ._consumer import _ConsumerMixin
from ._envelope import (
    EnvelopeType,
    IntermediateRun,
    K,
    TaskProgressEnvelope,
    V,
    make_envelope,
    make_envelopes,
)
from ._feed import TaskFeed, check_metrics
from ._handoff import _HandoffMixin
from ._stall import _StallMixin
from ._task import Mail, Running, ScheduledTask, Start
from ._waitable import Waitable
from ._waiting import _Preempted, _WaitingMixin

if TYPE_CHECKING:  # metrics
    from ..metrics import RunnerMetricsCollector

__all__ = ["RunnerStatistics"]

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL
_ERROR = EnvelopeType.ERROR
_WAITING = EnvelopeType.WAITING
_RESUMED = EnvelopeType.RESUMED


# What one synchronous dispatch step did.
STARTED, ENDED, MUST_WAIT = 0, 1, 2


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerStatistics:
    """A snapshot of a runner's counters (see :meth:`PoolRunner.statistics`).

    Attributes:
        started: tasks started (task ids handed out, rejected tasks included).
        running: tasks in flight.
        completed: tasks that ended in a FINAL envelope.
        failed: tasks that ended in an ERROR envelope.
        envelopes: envelopes delivered to the consumer.
    """

    started: int
    running: int
    completed: int
    failed: int
    envelopes: int


class PoolRunner(
    _WaitingMixin,
    _HandoffMixin,
    _StallMixin,
    _ConsumerMixin[V, K],
    TaskEvents,
    Generic[V, K],
):
    """What both runners share: the dispatcher, the executor seam and the envelope
    stream. Subclasses decide what to start next (:meth:`_next_start`).

    Generic (for the type checker) in its envelopes' ``value`` type ``V`` and
    ``key`` type ``K``: :meth:`run_tasks` yields ``TaskProgressEnvelope[V, K]``."""

    def __init__(
        self,
        name: str,
        source: Any,
        *,
        executor: ExecutorSpec,
        timeout: float | None,
        max_unread: int,
        metrics: RunnerMetricsCollector | None = None,
        workers: int | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.timeout = check_seconds("timeout", timeout, allow_none=True, positive=True)
        self.max_unread = check_int("max_unread", max_unread, minimum=1)
        self._executor_spec = executor
        check_executor_spec(executor, workers)
        self._workers = workers
        # metrics: every hook call below is guarded by one `if`, so None costs nothing.
        self.metrics = check_metrics(metrics)
        self._feed = TaskFeed(source, metrics)
        # Invariant: _running maps the id of every task submitted and not yet ended.
        self._running: dict[int, Running] = {}
        # Invariant: the envelopes reported and not yet yielded, in order; an entry is
        # one envelope, or an IntermediateRun of one task's INTERMEDIATE values (a batch
        # the executor reported at once, its envelopes built only when run_tasks yields
        # them). _unread counts the envelopes in it.
        self._buffer: deque[TaskProgressEnvelope | IntermediateRun] = deque()
        self._unread = 0
        self._room = ParkingLot()  # the dispatcher parks here while the buffer is full
        self._consumer: asyncio.Future[None] | None = None
        self._next_id = 0
        self._active = False
        self._closing = False
        self._executor: Executor | None = None
        self._completed = 0
        self._failed = 0
        self._envelopes = 0
        # Ids of ERROR envelopes of attempts that will be retried (not final failures).
        self._retried: set[int] = set()
        # Whether this run warned that its capacity admits nothing (once per run).
        self._stall_warned = False
        # Waitable tasks. Invariant: _resumes holds, in order, the parked tasks that
        # have a message (or a timed-out receive) and wait for their capacity; the
        # resumer runs while it is not empty, and the dispatcher parks in _resume_gate.
        self._resumes: deque[Running] = deque()
        self._resumer: asyncio.Task[None] | None = None
        self._resume_gate = ParkingLot()
        self._by_key: dict[Any, int] = {}  # running waitable tasks with a key
        self._parked = 0  # tasks parked (holding nothing), queued ones included
        self._waitables = False  # whether a waitable task started in this run
        # Set while the dispatcher waits for capacity (runs with waitables only): a
        # resume queued resolves it, and the dispatcher steps back.
        self._preempt: asyncio.Future[None] | None = None
        # The capacity hand-off (see _handoff): whether this run may queue
        # successors; the tasks a successor may be queued behind (not ended, no
        # successor yet), oldest first; the lot the dispatcher parks on while it waits
        # for capacity, and whether it is parked there now.
        self._follows = False
        self._tails: dict[int, Running] = {}
        self._follow_lot = ParkingLot()
        self._follow_parked = False
        # For _others_wait: the levels of the capacity tree with queued acquires (its
        # root's registry), and the executor's slots.
        self._tree_queued: dict[Any, None] = {}
        self._follow_slots: CapacitySource | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.statistics()!r}>"

    def statistics(self) -> RunnerStatistics:
        """Tasks started, running, completed and failed; envelopes delivered (a batch of
        one task's INTERMEDIATE envelopes counts once its first one is yielded)."""
        return RunnerStatistics(
            self._next_id, len(self._running), self._completed, self._failed, self._envelopes
        )

    @property
    def running(self) -> int:
        """How many tasks are in flight (waiting ones included)."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """How many tasks wait in ``receive()`` holding no capacity (those whose
        message came and that wait for their capacity again included)."""
        return self._parked

    @property
    def executor(self) -> Executor | None:
        """The executor of the run in progress (``None`` between runs)."""
        return self._executor

    stall_warning: float = 5.0
    """Seconds the dispatcher may wait for capacity while none of the runner's tasks
    runs before it warns (``RuntimeWarning``, once per run) that the capacity admits
    nothing; the warning names the capacity and any level whose limit can never
    admit the task."""

    # -- what subclasses decide ---------------------------------------------------------------

    async def _next_start(self) -> Start | TaskProgressEnvelope | None:
        """The next task to start with its capacity held, an envelope to emit at once
        (a task rejected before it ran), or ``None`` when the source is exhausted."""
        raise NotImplementedError

    def _on_final(self, record: Running, value: Any) -> BaseException | None:
        """Bookkeeping for a FINAL; an exception turns it into an ERROR."""
        return None

    def _on_error(self, record: Running, error: BaseException) -> bool:
        """Bookkeeping for an ERROR; return whether it is the task's last attempt."""
        return True

    def _on_shutdown(self) -> None:
        """Drop what the subclass keeps between tasks (timers...)."""

    def _release(self, record: Running) -> None:
        """Give back everything the task held."""
        raise NotImplementedError

    def _may_hand_off(self) -> bool:
        """Whether the runner's capacity may pass from a task to its successor (see
        :mod:`._handoff`); default: no."""
        return False

    def _hand_over(self, record: Running, successor: Running) -> None:
        """``record`` ended: what it held is ``successor``'s now."""
        successor.slots = record.slots
        successor.cost = record.cost

    def task_resources(self, task_id: int, usage: Any) -> None:
        """What the executor measured a task using (``TaskEvents`` option); the
        scheduled runner reconciles costs with it."""

    async def _reacquire(self, record: Running) -> None:
        """Acquire again the capacity a parked task gave back (not its slot)."""
        raise NotImplementedError

    async def _acquire_slot(self) -> CapacitySource | None:
        """Take one executor slot; return the slots it came from (``None``: the
        executor is unlimited, nothing was taken)."""
        slots = self._executor.capacity if self._executor is not None else None
        if slots is not None:
            await slots.acquire()
        return slots

    # -- TaskEvents (called by the executor on the loop) ------------------------------------

    @property
    def listens_for_starts(self) -> bool:
        """Whether any task may have a timeout (else starts need not be reported)."""
        return self.timeout is not None

    def task_started(self, task_id: int) -> None:
        """The task began running: its ``timeout`` clock (re)starts now."""
        record = self._running.get(task_id)
        if record is None or record.timeout is None:
            return
        if record.timer is not None:
            record.timer.cancel()
        record.timer = asyncio.get_running_loop().call_later(
            record.timeout, self._time_out, task_id, record.timeout
        )

    def task_waiting(self, task_id: int) -> None:
        """A task reported started early is queued behind others after all: its clock
        stops until ``task_started``."""
        record = self._running.get(task_id)
        if record is not None and record.timer is not None:
            record.timer.cancel()
            record.timer = None

    def task_intermediate(self, task_id: int, value: Any) -> None:
        record = self._running.get(task_id)
        if record is None or self._closing:
            return
        self._emit(make_envelope(_INTERMEDIATE, task_id, record.key, value))

    def task_intermediates(self, task_id: int, values: list[Any]) -> None:
        record = self._running.get(task_id)
        if record is None or self._closing or not values:
            return
        if self.metrics is not None:  # metrics
            for envelope in make_envelopes(_INTERMEDIATE, task_id, record.key, values):
                self.metrics.on_envelope(envelope)
        self._buffer.append(IntermediateRun(task_id, record.key, values))
        self._unread += len(values)
        self._wake_consumer()

    def task_final(self, task_id: int, value: Any) -> None:
        record = self._end(task_id)
        if record is None:
            return
        problem = self._on_final(record, value)
        if problem is not None:
            self._failed += 1
            self._emit(make_envelope(_ERROR, task_id, record.key, None, problem))
            return
        self._completed += 1
        self._emit(make_envelope(_FINAL, task_id, record.key, value))

    def task_error(self, task_id: int, error: BaseException) -> None:
        record = self._end(task_id)
        if record is None:
            return
        self._failed += 1
        if not self._on_error(record, error):
            self._retried.add(task_id)
        self._emit(make_envelope(_ERROR, task_id, record.key, None, error))

    def _end(self, task_id: int) -> Running | None:
        """Forget a task that ended and give its capacity back, or hand it over to
        the task queued behind it."""
        record = self._running.pop(task_id, None)
        if record is None:
            return None
        if record.timer is not None:
            record.timer.cancel()
        successor = record.successor
        before = record.after
        if before is not None:
            # It ended while queued (cancelled): it held nothing, and its successor,
            # if any, waits behind its predecessor now. (Never a waitable task.)
            before.successor = successor
            if successor is not None:
                successor.after = before
            else:
                self._tails.pop(task_id, None)
                self._tails[before.task_id] = before
        elif successor is not None:
            record.successor = None
            successor.after = None
            self._hand_over(record, successor)
        else:
            if self._tails:
                self._tails.pop(task_id, None)
            mail = record.mail
            if mail is None:
                self._release(record)
            else:
                self._close_mail(record, mail)
        if self._follow_parked and not self._others_wait():
            self._follow_parked = False  # once: it runs before it parks again
            self._follow_lot.unpark_all()  # a place behind a task may have freed
        if self.metrics is not None:  # metrics
            self.metrics.on_task_ended(task_id)
        if self._closing:
            self._wake_consumer()  # it waits for _running to empty; nothing is emitted
            return None
        return record

    def _emit(self, envelope: TaskProgressEnvelope) -> None:
        if self.metrics is not None:  # metrics
            self.metrics.on_envelope(envelope)
        self._buffer.append(envelope)
        self._unread += 1
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        waiter = self._consumer
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the dispatcher ----------------------------------------------------------------------

    def _dispatch_now(self) -> int:
        """Take one dispatch step without waiting, if that is possible: ``STARTED``
        (a task started or was rejected), ``ENDED`` (the source is exhausted) or
        ``MUST_WAIT`` (then :meth:`_next_start` finishes the step)."""
        return MUST_WAIT

    async def _dispatch(self) -> None:
        room = self._room
        while True:
            while self._unread >= self.max_unread:
                await room.park()
            if self._resumes:  # resuming tasks go first
                await self._resume_gate.park()
                continue
            step = self._dispatch_now()
            if step == STARTED:
                continue
            if step == ENDED:
                return
            try:
                start = await self._next_start()
            except _Preempted:
                continue
            if start is None:
                return
            if isinstance(start, TaskProgressEnvelope):
                self._failed += 1
                if self.metrics is not None:  # metrics
                    self.metrics.on_task_rejected()
                self._emit(start)
                continue
            self._launch(
                start.runner,
                start.slots,
                start.key,
                start.timeout,
                start.scheduled,
                start.cost,
                start.after,
            )

    def _new_id(self) -> int:
        task_id = self._next_id
        self._next_id += 1
        return task_id

    def _launch(
        self,
        runner: Any,
        slots: CapacitySource | None,
        key: Any,
        timeout: float | None,
        scheduled: ScheduledTask[Any] | None,
        cost: Any = None,
        after: Running | None = None,
    ) -> None:
        executor = self._executor
        assert executor is not None
        task_id = self._next_id
        self._next_id += 1
        record = Running(task_id, key, slots, scheduled, cost)
        # The record exists before submit: an executor may report at once.
        self._running[task_id] = record
        if runner.__class__ is Waitable:
            record.mail = Mail()
            self._waitables = True
            if key is not None:
                self._by_key[key] = task_id
            if not executor.runs_waitables:
                self.task_error(
                    task_id,
                    NotWaitableError(
                        f"task {task_id} is waitable ({runner!r}) and the {executor.name} "
                        "executor cannot run waitable task runners (the inline, thread and "
                        "process executors can)"
                    ),
                )
                return
        if self.metrics is not None:  # metrics
            self.metrics.on_task_started(task_id)
        record.timeout = timeout
        if after is not None:  # queued behind ``after``, holding nothing
            record.after = after
            after.successor = record
            del self._tails[after.task_id]
        try:
            if after is not None:
                handle = executor.submit(task_id, runner, self, after=after.handle)  # type: ignore[call-arg]
            elif cost is not None and executor.takes_costs:
                handle = executor.submit(task_id, runner, self, cost=cost)  # type: ignore[call-arg]
            else:
                handle = executor.submit(task_id, runner, self)
        except BaseException as error:
            self.task_error(task_id, error)
            return
        if task_id in self._running:
            record.handle = handle
            if self._follows and record.mail is None:
                self._tails[task_id] = record
            # The timeout clock starts when the task starts (task_started); an executor
            # that does not report starts starts its tasks at submit.
            if timeout is not None and record.timer is None and not executor.reports_starts:
                record.timer = asyncio.get_running_loop().call_later(
                    timeout, self._time_out, task_id, timeout
                )

    def _time_out(self, task_id: int, timeout: float) -> None:
        record = self._running.get(task_id)
        if record is not None and record.handle is not None:
            record.handle.cancel(TaskTimeoutError(f"task {task_id} timed out after {timeout}s"))

    def _claim(self) -> tuple[Executor, bool]:
        """Mark the runner running and make the run's executor (and whether the run
        owns it)."""
        if self._active:
            raise RuntimeError(f"runner {self.name!r} is already running")
        executor, owned = make_executor(self._executor_spec, self._workers)
        self._active = True
        self._closing = False
        self._stall_warned = False
        self._executor = executor
        return executor, owned

    async def _open(self, executor: Executor) -> asyncio.Task[None]:
        """Start the executor and the dispatcher."""
        await executor.start()
        self._follows = bool(getattr(executor, "queues_successors", False)) and (
            self._may_hand_off()
        )
        if self._follows:
            self._tree_queued = self.capacity._chain[-1]._queued  # type: ignore[attr-defined]
            self._follow_slots = executor.capacity
        dispatcher = asyncio.ensure_future(self._dispatch())
        dispatcher.add_done_callback(lambda _: self._wake_consumer())
        return dispatcher

    async def _shutdown(
        self, dispatcher: asyncio.Task[None] | None, executor: Executor, owned: bool
    ) -> None:
        try:
            if dispatcher is not None and not dispatcher.done():
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)
            self._closing = True  # from here on, no task is queued to resume
            resumer = self._resumer
            if resumer is not None and not resumer.done():
                resumer.cancel()
                await asyncio.gather(resumer, return_exceptions=True)
            self._on_shutdown()
            for record in list(self._running.values()):
                if record.handle is not None:
                    record.handle.cancel()
            while self._running:
                self._consumer = asyncio.get_running_loop().create_future()
                try:
                    await self._consumer
                finally:
                    self._consumer = None
        finally:
            self._buffer.clear()
            self._tails.clear()
            self._follows = False
            self._unread = 0
            self._retried.clear()
            self._resumes.clear()
            self._resumer = None
            self._resume_gate.unpark_all()
            self._room.unpark_all()
            self._executor = None
            self._active = False
            if owned:
                await executor.aclose()
