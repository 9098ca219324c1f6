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

Waitable tasks (:func:`~pullpush.waitable`) add a third piece, the **resumer**: a
task parked in ``receive()`` gives back its capacity and executor slot (a WAITING
envelope); :meth:`PoolRunner.send` queues its message and the task in the resume
queue; the resumer, one asyncio task started when needed, re-acquires each queued
task's slot and capacity in queue order, hands it its messages and lets it go on (a
RESUMED envelope). Resuming tasks go ahead of new ones: while a task waits in the
resume queue the dispatcher starts no new task, and a dispatcher already waiting for
capacity steps back (its task stays first in line for after the resumes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Generic

from .._exceptions import (
    MessageNotReceivedError,
    NotWaitableError,
    TaskTimeoutError,
    UnknownTaskError,
)
from .._sync import ParkingLot
from .._util import check_int, check_seconds
from ..capacity import CapacitySource, ResourceCapacitySource
from ..executors import Executor, ExecutorSpec, TaskEvents
from ..executors._registry import check_executor_spec, make_executor
from ._envelope import (
    EnvelopeBatch,
    EnvelopeType,
    IntermediateRun,
    K,
    TaskProgressEnvelope,
    V,
    make_envelope,
    make_envelopes,
    take_batch,
)
from ._feed import TaskFeed, check_metrics
from ._task import Mail, Running, ScheduledTask, Start
from ._waitable import Waitable

if TYPE_CHECKING:  # metrics
    from ..metrics import RunnerMetricsCollector

__all__ = ["RunnerStatistics"]

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL
_ERROR = EnvelopeType.ERROR
_WAITING = EnvelopeType.WAITING
_RESUMED = EnvelopeType.RESUMED


class _Preempted(Exception):
    """The dispatcher stepped back from a capacity wait for a resuming task."""


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


class PoolRunner(TaskEvents, Generic[V, K]):
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

    # -- waitable tasks -----------------------------------------------------------------------

    @property
    def accepts_messages(self) -> bool:
        return True

    def task_parked(self, task_id: int, received: int, timeout: float | None) -> None:
        """A waitable task waits in ``receive()``: give back what it holds (a WAITING
        envelope), unless a message is on its way to it already (then it goes on at
        once, holding on to its capacity)."""
        record = self._running.get(task_id)
        if record is None or record.mail is None or record.handle is None:
            return
        mail = record.mail
        self.task_received(task_id, received)
        if mail.forwarded > received:
            record.handle.resume()  # type: ignore[attr-defined]
            return
        if self._closing:
            return  # it is being cancelled; it gives back what it holds as it ends
        mail.parked = True
        self._parked += 1
        loop = asyncio.get_running_loop()
        timer = record.timer
        if timer is not None:  # the timeout counts active time only: stop its clock
            timer.cancel()
            record.timer = None
            mail.left = max(0.0, timer.when() - loop.time())
        else:
            mail.left = None
        self._release(record)
        record.slots = None
        if timeout is not None:
            mail.receive_timer = loop.call_later(timeout, self._receive_timed_out, record)
        self._emit(make_envelope(_WAITING, task_id, record.key, None))

    def task_received(self, task_id: int, received: int) -> None:
        record = self._running.get(task_id)
        if record is None or record.mail is None:
            return
        mail = record.mail
        mail.received = received
        waiters = mail.waiters
        while waiters and waiters[0][0] <= received:
            future = waiters.popleft()[1]
            if not future.done():
                future.set_result(None)

    def send_nowait(self, task: Any, message: Any) -> None:
        """Send ``message`` to the running waitable task ``task`` (its id, or its
        :class:`ScheduledTask` key: a key shadows an equal id); it receives it after
        the messages sent to it before, exactly once.

        A task parked in ``receive()`` is queued to resume: the runner re-acquires its
        capacity and slot, ahead of new tasks, then hands it the message. A message
        the task never takes (it ends first) is reported: ``await send`` raises
        :class:`~pullpush.MessageNotReceivedError`, and ``send_nowait``'s messages
        get a ``RuntimeWarning`` when the task ends (not when the run is being closed).

        Raises:
            UnknownTaskError: no task of this runner runs under that id or key now
                (never started, or ended).
            NotWaitableError: the task's runner is not :func:`~pullpush.waitable`.
        """
        self._deliver(self._find(task), message)

    async def send(self, task: Any, message: Any) -> None:
        """Send ``message`` to the running waitable task ``task``, as
        :meth:`send_nowait` does, and wait until the task has taken it from its
        inbox; :class:`~pullpush.MessageNotReceivedError` if it ends first.

        Awaiting is optional in effect: the message is queued before the first
        ``await``; the wait only tells when (and whether) the task took it. Do not
        await it from the loop that reads ``run_tasks()`` if the task cannot resume
        until more envelopes are read (``max_unread``)."""
        record = self._find(task)
        mail = self._deliver(record, message)
        if mail.received >= mail.sent:
            return
        future = asyncio.get_running_loop().create_future()
        mail.waiters.append((mail.sent, future))
        await future

    def _find(self, task: Any) -> Running:
        task_id = self._by_key.get(task) if task is not None else None
        if task_id is None:
            task_id = task if isinstance(task, int) and not isinstance(task, bool) else None
        record = self._running.get(task_id) if task_id is not None else None
        if record is None:
            if isinstance(task_id, int) and 0 <= task_id < self._next_id:
                raise UnknownTaskError(f"task {task_id} of runner {self.name!r} has ended")
            raise UnknownTaskError(f"runner {self.name!r} runs no task {task!r}")
        if record.mail is None:
            raise NotWaitableError(
                f"task {record.task_id} of runner {self.name!r} is not waitable: wrap its "
                "runner with pullpush.waitable() to send it messages"
            )
        return record

    def _deliver(self, record: Running, message: Any) -> Mail:
        mail = record.mail
        assert mail is not None
        mail.sent += 1
        if mail.parked or record.handle is None:
            mail.held.append(message)
            if mail.parked and not mail.queued:
                self._queue_resume(record)
        else:
            mail.forwarded += 1
            record.handle.send(message)  # type: ignore[attr-defined]
        return mail

    def _receive_timed_out(self, record: Running) -> None:
        mail = record.mail
        assert mail is not None
        mail.receive_timer = None
        if mail.parked and record.task_id in self._running:
            mail.timed_out = True
            if not mail.queued:
                self._queue_resume(record)

    def _queue_resume(self, record: Running) -> None:
        if self._closing:
            return  # every task is being cancelled: none resumes
        assert record.mail is not None
        record.mail.queued = True
        self._resumes.append(record)
        preempt = self._preempt
        if preempt is not None and not preempt.done():
            preempt.set_result(None)
        if self._resumer is None or self._resumer.done():
            self._resumer = asyncio.ensure_future(self._resume_queued())

    async def _resume_queued(self) -> None:
        """The resumer: re-acquire the queued tasks' slots and capacity, in order,
        and let them go on."""
        resumes, running = self._resumes, self._running
        try:
            while resumes:
                record = resumes[0]
                if running.get(record.task_id) is not record:
                    resumes.popleft()  # it ended while parked (cancelled)
                    continue
                slots = await self._acquire_slot()
                try:
                    await self._reacquire(record)
                except BaseException:
                    release_slot(slots)
                    raise
                if resumes and resumes[0] is record:
                    resumes.popleft()
                record.slots = slots
                if running.get(record.task_id) is not record or self._closing:
                    self._release(record)  # it ended meanwhile: give back, unused
                    record.slots = None
                    continue
                self._resume(record)
        finally:
            self._resume_gate.unpark_all()

    def _resume(self, record: Running) -> None:
        """Hand a parked task, its capacity held again, its messages; let it go on."""
        mail = record.mail
        handle: Any = record.handle
        assert mail is not None and handle is not None
        mail.parked = mail.queued = False
        self._parked -= 1
        if mail.receive_timer is not None:
            mail.receive_timer.cancel()
            mail.receive_timer = None
        timed_out = mail.timed_out and not mail.held
        mail.timed_out = False
        while mail.held:
            mail.forwarded += 1
            handle.send(mail.held.popleft())
        if mail.left is not None and record.timeout is not None:
            record.timer = asyncio.get_running_loop().call_later(
                mail.left, self._time_out, record.task_id, record.timeout
            )
        self._emit(make_envelope(_RESUMED, record.task_id, record.key, None))
        handle.resume(timed_out)

    def _close_mail(self, record: Running, mail: Mail) -> None:
        """A waitable task ended: give back what it holds (nothing if parked) and
        settle its messages."""
        if mail.parked:
            self._parked -= 1
        else:
            self._release(record)
        if mail.receive_timer is not None:
            mail.receive_timer.cancel()
        key = record.key
        if key is not None and self._by_key.get(key) == record.task_id:
            del self._by_key[key]
        missed = mail.sent - mail.received
        if not missed:
            return
        awaited = 0
        for number, future in mail.waiters:
            awaited += 1
            if not future.done():
                future.set_exception(
                    MessageNotReceivedError(
                        f"task {record.task_id} ended before it received message {number} "
                        f"of the {mail.sent} sent to it"
                    )
                )
        mail.waiters.clear()
        if missed > awaited and not self._closing:
            message = (
                f"task {record.task_id} of runner {self.name!r} ended with {missed} "
                f"message{'s' if missed != 1 else ''} sent to it that it never received"
            )
            try:
                warnings.warn(message, RuntimeWarning, stacklevel=1)
            except Warning as error:  # -W error: not raised into the executor's report
                asyncio.get_running_loop().call_exception_handler(
                    {"message": message, "exception": error}
                )

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
        """Forget a task that ended and give its capacity back."""
        record = self._running.pop(task_id, None)
        if record is None:
            return None
        if record.timer is not None:
            record.timer.cancel()
        mail = record.mail
        if mail is None:
            self._release(record)
        else:
            self._close_mail(record, mail)
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
                start.runner, start.slots, start.key, start.timeout, start.scheduled, start.cost
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
        try:
            if cost is not None and executor.takes_costs:
                handle = executor.submit(task_id, runner, self, cost=cost)  # type: ignore[call-arg]
            else:
                handle = executor.submit(task_id, runner, self)
        except BaseException as error:
            self.task_error(task_id, error)
            return
        if task_id in self._running:
            record.handle = handle
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

    # -- a capacity that admits nothing -------------------------------------------------------

    stall_warning: float = 5.0
    """Seconds the dispatcher may wait for capacity while none of the runner's tasks
    runs before it warns (``RuntimeWarning``, once per run) that the capacity admits
    nothing; the warning names the capacity and any level whose limit can never
    admit the task."""

    async def _acquire_capacity(
        self,
        acquire: Any,
        capacity: Any,
        cost: Any,
        give_back: Callable[[Any], None] | None = None,
    ) -> Any:
        """Await ``acquire`` (the capacity's acquire of ``cost``); if it waits for
        :attr:`stall_warning` seconds while nothing of this runner is in flight, warn.

        With ``give_back`` (the dispatcher's waits, in a run with waitable tasks), a
        resume queued meanwhile preempts the wait: what it acquired after all goes back
        through ``give_back(result)`` and :class:`_Preempted` is raised."""
        if give_back is not None and self._waitables:
            acquire = self._preemptible(acquire, give_back)
        if self._running or self._stall_warned:
            return await acquire
        timer = asyncio.get_running_loop().call_later(
            self.stall_warning, self._warn_stalled, capacity, cost
        )
        try:
            return await acquire
        finally:
            timer.cancel()

    async def _preemptible(self, acquire: Any, give_back: Callable[[Any], None]) -> Any:
        if self._resumes:
            acquire.close()
            raise _Preempted
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(acquire)
        preempt = self._preempt = loop.create_future()
        try:
            await asyncio.wait((task, preempt), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the dispatcher is cancelled
            self._preempt = None
            await _abandon(task, give_back)
            raise
        self._preempt = None
        if not task.done():
            await _abandon(task, give_back)
            raise _Preempted
        return task.result()

    def _warn_stalled(self, capacity: Any, cost: Any) -> None:
        if self._running or self._stall_warned or self._closing:
            return
        self._stall_warned = True
        why = _never_admits(capacity, cost)
        detail = (
            f": {why}, so no task can ever start unless that limit is raised"
            if why is not None
            else " (its units are all held elsewhere)"
        )
        warnings.warn(
            f"runner {self.name!r} has waited {self.stall_warning}s for capacity "
            f"{capacity!r} with no task running{detail}",
            RuntimeWarning,
            stacklevel=1,
        )

    # -- the consumer side ----------------------------------------------------------------------

    async def run_tasks(
        self, stop_on_error: bool = False
    ) -> AsyncGenerator[TaskProgressEnvelope[V, K], None]:
        """Run every task of the source; yield their envelopes in completion order.

        Args:
            stop_on_error: ``False`` (default) yields ERROR envelopes and goes on;
                ``True`` cancels the tasks in flight and raises the first task error.

        An error raised by the source itself ends the run after the tasks already
        started have delivered their envelopes.

        Leaving early cancels every task in flight and returns all capacity before the
        generator finishes closing: ``await stream.aclose()``, cancellation, and
        ``async with contextlib.aclosing(runner.run_tasks()) as stream`` wait for that.
        A bare ``break`` leaves the cleanup to Python's async-generator finalizer,
        which runs it on the event loop right after the loop drops the generator.
        """
        executor, owned = self._claim()
        dispatcher: asyncio.Task[None] | None = None
        try:
            dispatcher = await self._open(executor)
            buffer, room, running = self._buffer, self._room, self._running
            max_unread = self.max_unread
            while True:
                if buffer:
                    entry = buffer.popleft()
                    if entry.__class__ is IntermediateRun:
                        # A run of one task's INTERMEDIATE values: yielded one by one,
                        # its credits returned once the consumer has taken them all.
                        run: Any = entry
                        count = len(run.values)
                        unread = self._unread
                        self._unread -= count
                        if unread >= max_unread > self._unread:
                            room.unpark()  # the dispatcher may be parked (it parks at max)
                        self._envelopes += count
                        for envelope in make_envelopes(
                            _INTERMEDIATE, run.task_id, run.key, run.values
                        ):
                            yield envelope
                        record = running.get(run.task_id)
                        if record is not None and record.handle is not None:
                            record.handle.ack(count)
                        continue
                    envelope = entry  # type: ignore[assignment]
                    self._unread -= 1
                    if self._unread == max_unread - 1:
                        room.unpark()
                    kind = envelope.type
                    if kind is _INTERMEDIATE:
                        record = running.get(envelope.task_id)
                        if record is not None and record.handle is not None:
                            record.handle.ack(1)
                    elif kind is _ERROR:
                        retried = envelope.task_id in self._retried
                        self._retried.discard(envelope.task_id)
                        if stop_on_error and not retried:
                            assert envelope.error is not None
                            raise envelope.error
                    self._envelopes += 1
                    yield envelope
                elif dispatcher.done() and not running:
                    dispatcher.result()  # the source's own error, if any
                    return
                else:
                    await self._wait_for_envelopes()
        finally:
            await self._shutdown(dispatcher, executor, owned)

    async def run_batches(
        self, stop_on_error: bool = False, *, max_batch: int = 4096
    ) -> AsyncGenerator[EnvelopeBatch[V, K], None]:
        """Run every task of the source, as :meth:`run_tasks` does, and hand over its
        envelopes in batches: each :class:`EnvelopeBatch` holds every envelope waiting
        when the consumer asks for the next one (at least one, at most ``max_batch``),
        in the order ``run_tasks`` would have yielded them.

        A batch is cheaper than its envelopes one by one: one ``yield`` for all of
        them, and no envelope object built for values that arrived together unless
        the consumer reads the batch as a sequence. Reading ``batch.groups()`` gets
        each task's consecutive INTERMEDIATE values as one
        :class:`IntermediateRun` with a ``values`` list::

            async for batch in runner.run_batches():
                for group in batch.groups():
                    if group.type is EnvelopeType.INTERMEDIATE:
                        progress[group.task_id] += len(group.values)
                    elif group.type is EnvelopeType.FINAL:
                        results[group.task_id] = group.value

        Flow control is that of ``run_tasks`` with a batch for an envelope: the
        envelopes of a batch stop counting towards ``max_unread`` when it is handed
        over, and the tasks get their flow-control credits for its INTERMEDIATE
        envelopes when the consumer asks for the next batch (or the run ends), so a
        slow consumer still holds its producers back. ``stop_on_error``, the end of
        the run and leaving early (``aclose()``, cancellation, ``break``) are as for
        ``run_tasks``; with ``stop_on_error``, the envelopes before the error come as a
        batch of their own, then the error is raised.
        """
        max_batch = check_int("max_batch", max_batch, minimum=1)
        executor, owned = self._claim()
        dispatcher: asyncio.Task[None] | None = None
        try:
            dispatcher = await self._open(executor)
            buffer, room, running = self._buffer, self._room, self._running
            max_unread = self.max_unread
            while True:
                if buffer:
                    groups, count, error = take_batch(
                        buffer, max_batch, self._retried, stop_on_error
                    )
                    if count:
                        unread = self._unread
                        self._unread -= count
                        if unread >= max_unread > self._unread:
                            room.unpark()  # the dispatcher may be parked (it parks at max)
                        self._envelopes += count
                        yield EnvelopeBatch(groups, count)
                        for group in groups:
                            if group.__class__ is IntermediateRun:
                                record = running.get(group.task_id)
                                if record is not None and record.handle is not None:
                                    record.handle.ack(len(group.values))
                    if error is not None:
                        self._unread -= 1
                        if self._unread == max_unread - 1:
                            room.unpark()
                        raise error
                elif dispatcher.done() and not running:
                    dispatcher.result()  # the source's own error, if any
                    return
                else:
                    await self._wait_for_envelopes()
        finally:
            await self._shutdown(dispatcher, executor, owned)

    async def _wait_for_envelopes(self) -> None:
        """Park the consumer until the dispatcher or a task's report wakes it."""
        self._consumer = asyncio.get_running_loop().create_future()
        try:
            await self._consumer
        finally:
            # Woken, cancelled or closed: nothing may resolve this future any more.
            self._consumer = None

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


async def _abandon(task: asyncio.Task[Any], give_back: Callable[[Any], None]) -> None:
    """Cancel a capacity acquire; give back what it acquired if it won the race."""
    task.cancel()
    outcomes: Any = await asyncio.gather(task, return_exceptions=True)
    if not isinstance(outcomes[0], BaseException):
        give_back(outcomes[0])


def release_slot(slots: CapacitySource | None) -> None:
    if slots is not None:
        slots.release()


def _never_admits(capacity: Any, cost: Any) -> str | None:
    """Why ``cost`` can never be taken from ``capacity`` under its current limits (the
    first level of its chain that is too small), or ``None``."""
    for level, at_level in capacity._costs(cost):
        if isinstance(level, CapacitySource):
            if at_level > level.limit:
                return f"{level!r} has limit {level.limit}"
        elif isinstance(level, ResourceCapacitySource):
            limits = level.limits
            for key, amount in dict(at_level).items():
                if key in limits and amount > limits[key]:
                    return f"{level!r} allows {key}={limits[key]:g}, one task costs {amount:g}"
    return None
