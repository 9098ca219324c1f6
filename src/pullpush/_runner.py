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
"""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._envelope import (
    EnvelopeBatch,
    EnvelopeType,
    IntermediateRun,
    TaskProgressEnvelope,
    make_envelope,
    make_envelopes,
)
from ._exceptions import ImpossibleCostError, PullPushError, TaskTimeoutError
from ._obj import pull_iter
from ._sync import ParkingLot
from ._task import DEFAULT_COST, RetryPolicy, ScheduledTask
from ._util import check_int, check_seconds
from .capacity import CapacitySource, ResourceCapacitySource
from .executors import Executor, ExecutorSpec, TaskHandle
from .executors._registry import check_executor_spec, make_executor
from .scheduling import NodeState

if TYPE_CHECKING:  # metrics
    from .metrics import RunnerMetricsCollector

__all__ = ["HierarchicalTaskPoolRunner", "RunnerStatistics", "ScheduledTaskPoolRunner"]

K = TypeVar("K")

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_FINAL = EnvelopeType.FINAL
_ERROR = EnvelopeType.ERROR

_END: Any = object()
_NONE: Any = object()

# What one synchronous dispatch step did.
_STARTED, _ENDED, _MUST_WAIT = 0, 1, 2


class _Running:
    """A task in flight, from submit to its terminal event."""

    __slots__ = ("cost", "handle", "key", "scheduled", "slots", "task_id", "timeout", "timer")

    def __init__(
        self,
        task_id: int,
        key: Any,
        slots: CapacitySource | None,
        scheduled: ScheduledTask[Any] | None,
        cost: Any = None,
    ) -> None:
        self.task_id = task_id
        self.key = key
        # The executor's slots the task holds a unit of (None: an unlimited executor).
        # What else it holds, the runner's _release knows (its capacity, its cost).
        self.slots = slots
        self.scheduled = scheduled
        self.cost = cost
        self.handle: TaskHandle | None = None
        # Seconds the task may run (None: no limit); its timer starts when it starts.
        self.timeout: float | None = None
        self.timer: asyncio.TimerHandle | None = None


class _Start:
    """What the dispatcher decided to start next, with its capacity already held."""

    __slots__ = ("cost", "key", "runner", "scheduled", "slots", "timeout")

    def __init__(
        self,
        runner: Any,
        slots: CapacitySource | None,
        key: Any = None,
        timeout: float | None = None,
        scheduled: ScheduledTask[Any] | None = None,
        cost: Any = None,
    ) -> None:
        self.runner = runner
        self.slots = slots
        self.key = key
        self.timeout = timeout
        self.scheduled = scheduled
        self.cost = cost


class RunnerStatistics:
    """Live counters of a runner (see :meth:`_PoolRunner.statistics`)."""

    __slots__ = ("completed", "envelopes", "failed", "running", "started")

    def __init__(self, started: int, running: int, completed: int, failed: int, envelopes: int):
        self.started = started
        self.running = running
        self.completed = completed
        self.failed = failed
        self.envelopes = envelopes

    def __repr__(self) -> str:
        return (
            f"RunnerStatistics(started={self.started}, running={self.running}, "
            f"completed={self.completed}, failed={self.failed}, envelopes={self.envelopes})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunnerStatistics):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)


_RUNNER_HOOKS = (
    "on_task_pulled",
    "on_task_started",
    "on_task_rejected",
    "on_task_ended",
    "on_envelope",
)


def _check_metrics(metrics: RunnerMetricsCollector | None) -> RunnerMetricsCollector | None:
    """``metrics`` if it is None or has every hook a runner calls (duck typing, so a
    user's own collector works too), else a TypeError naming what is missing."""
    if metrics is not None:
        missing = [h for h in _RUNNER_HOOKS if not callable(getattr(metrics, h, None))]
        if missing:
            raise TypeError(
                "metrics must be a RunnerMetricsCollector or have its hooks; "
                f"{type(metrics).__name__} lacks {', '.join(missing)}"
            )
    return metrics


class _TaskFeed:
    """Reads a task source of any kind: a sync iterable (no awaiting), or an async
    iterable / pull object (read through its raw cycle)."""

    __slots__ = ("_async", "_metrics", "_sync", "never_waits")

    def __init__(self, source: object, metrics: RunnerMetricsCollector | None = None) -> None:
        self._metrics = metrics
        self._sync: Any = None
        self._async: AsyncIterator[Any] | None = None
        if hasattr(type(source), "__aiter__"):
            self._async = pull_iter(source)  # type: ignore[arg-type]
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
            self._sync = iter(source)
        else:
            raise TypeError(
                f"source must be an iterable, async iterable or pull object of task runners, "
                f"got {type(source).__name__}"
            )
        self.never_waits = self._sync is not None
        """Whether taking the next task never waits (a sync iterable)."""

    def next_now(self) -> Any:
        """The next task of a sync source, or ``_END`` (only when ``never_waits``)."""
        task = next(self._sync, _END)
        if self._metrics is not None and task is not _END:  # metrics
            self._metrics.on_task_pulled()
        return task

    async def next(self) -> Any:
        """The next task, or ``_END``."""
        if self._sync is not None:
            task = next(self._sync, _END)
        else:
            assert self._async is not None
            try:
                task = await self._async.__anext__()
            except StopAsyncIteration:
                return _END
        if self._metrics is not None and task is not _END:  # metrics
            self._metrics.on_task_pulled()
        return task


class _PoolRunner(Generic[K]):
    """What both runners share: the dispatcher, the executor seam and the envelope
    stream. Subclasses decide what to start next (:meth:`_next_start`)."""

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
        self.metrics = _check_metrics(metrics)
        self._feed = _TaskFeed(source, metrics)
        # Invariant: _running maps the id of every task submitted and not yet ended.
        self._running: dict[int, _Running] = {}
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
        """How many tasks are in flight."""
        return len(self._running)

    @property
    def executor(self) -> Executor | None:
        """The executor of the run in progress (``None`` between runs)."""
        return self._executor

    # -- what subclasses decide ---------------------------------------------------------------

    async def _next_start(self) -> _Start | TaskProgressEnvelope | None:
        """The next task to start with its capacity held, an envelope to emit at once
        (a task rejected before it ran), or ``None`` when the source is exhausted."""
        raise NotImplementedError

    def _on_final(self, record: _Running, value: Any) -> BaseException | None:
        """Bookkeeping for a FINAL; an exception turns it into an ERROR."""
        return None

    def _on_error(self, record: _Running, error: BaseException) -> bool:
        """Bookkeeping for an ERROR; return whether it is the task's last attempt."""
        return True

    def _on_shutdown(self) -> None:
        """Drop what the subclass keeps between tasks (timers...)."""

    def _release(self, record: _Running) -> None:
        """Give back everything the task held."""
        raise NotImplementedError

    def task_resources(self, task_id: int, usage: Any) -> None:
        """What the executor measured a task using (``TaskEvents`` option); the
        scheduled runner reconciles costs with it."""

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

    def _end(self, task_id: int) -> _Running | None:
        """Forget a task that ended and give its capacity back."""
        record = self._running.pop(task_id, None)
        if record is None:
            return None
        if record.timer is not None:
            record.timer.cancel()
        self._release(record)
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
        """Take one dispatch step without waiting, if that is possible: ``_STARTED``
        (a task started or was rejected), ``_ENDED`` (the source is exhausted) or
        ``_MUST_WAIT`` (then :meth:`_next_start` finishes the step)."""
        return _MUST_WAIT

    async def _dispatch(self) -> None:
        room = self._room
        while True:
            while self._unread >= self.max_unread:
                await room.park()
            step = self._dispatch_now()
            if step == _STARTED:
                continue
            if step == _ENDED:
                return
            start = await self._next_start()
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
        record = _Running(task_id, key, slots, scheduled, cost)
        # The record exists before submit: an executor may report at once.
        self._running[task_id] = record
        if self.metrics is not None:  # metrics
            self.metrics.on_task_started(task_id)
        record.timeout = timeout
        try:
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

    async def _acquire_capacity(self, acquire: Any, capacity: Any, cost: Any) -> Any:
        """Await ``acquire`` (the capacity's acquire of ``cost``); if it waits for
        :attr:`stall_warning` seconds while nothing of this runner is in flight, warn."""
        if self._running or self._stall_warned:
            return await acquire
        timer = asyncio.get_running_loop().call_later(
            self.stall_warning, self._warn_stalled, capacity, cost
        )
        try:
            return await acquire
        finally:
            timer.cancel()

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
    ) -> AsyncGenerator[TaskProgressEnvelope, None]:
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
                    self._consumer = asyncio.get_running_loop().create_future()
                    try:
                        await self._consumer
                    finally:
                        self._consumer = None
        finally:
            await self._shutdown(dispatcher, executor, owned)

    async def run_batches(
        self, stop_on_error: bool = False, *, max_batch: int = 4096
    ) -> AsyncGenerator[EnvelopeBatch, None]:
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
                    groups, count, error = self._take_batch(max_batch, stop_on_error)
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
                    self._consumer = asyncio.get_running_loop().create_future()
                    try:
                        await self._consumer
                    finally:
                        self._consumer = None
        finally:
            await self._shutdown(dispatcher, executor, owned)

    def _take_batch(
        self, max_batch: int, stop_on_error: bool
    ) -> tuple[list[TaskProgressEnvelope | IntermediateRun], int, BaseException | None]:
        """Take up to ``max_batch`` envelopes from the buffer's head, stopping before
        an ERROR that ``stop_on_error`` raises; return them as groups (one task's
        consecutive INTERMEDIATE values as one run), their count, and that error once
        it is the head (taken from the buffer, still counted in ``_unread``)."""
        buffer = self._buffer
        groups: list[TaskProgressEnvelope | IntermediateRun] = []
        append = groups.append
        count = 0
        last: Any = None  # the last group when it is a run this batch may extend
        owned = False  # whether last.values is a list of this batch's (not an executor's)
        while buffer and count < max_batch:
            entry: Any = buffer[0]
            if entry.__class__ is IntermediateRun:
                room = max_batch - count
                values = entry.values
                if len(values) > room:  # split: the rest stays at the head
                    entry.values = values[room:]
                    values = values[:room]
                    entry = IntermediateRun(entry.task_id, entry.key, values)
                else:
                    buffer.popleft()
                count += len(values)
                if last is not None and last.task_id == entry.task_id:
                    if not owned:
                        last.values = list(last.values)
                        owned = True
                    last.values += values
                else:
                    append(entry)
                    last, owned = entry, False
                continue
            kind = entry.type
            if kind is _INTERMEDIATE:  # reported alone (task_intermediate)
                buffer.popleft()
                count += 1
                if last is not None and last.task_id == entry.task_id:
                    if not owned:
                        last.values = list(last.values)
                        owned = True
                    last.values.append(entry.value)
                else:
                    last, owned = IntermediateRun(entry.task_id, entry.key, [entry.value]), True
                    append(last)
                continue
            if kind is _ERROR:
                retried = entry.task_id in self._retried
                if stop_on_error and not retried:
                    if count:
                        break  # the envelopes before the error first
                    buffer.popleft()
                    self._retried.discard(entry.task_id)
                    assert entry.error is not None
                    return groups, 0, entry.error
                self._retried.discard(entry.task_id)
            buffer.popleft()
            count += 1
            append(entry)
            last = None
        return groups, count, None

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
            self._closing = True
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
            self._room.unpark_all()
            self._executor = None
            self._active = False
            if owned:
                await executor.aclose()


def _release_slot(slots: CapacitySource | None) -> None:
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


class HierarchicalTaskPoolRunner(_PoolRunner[None]):
    """Run task runners with one unit of a :class:`CapacitySource` each.

    Args:
        name: used in ``repr`` and errors.
        source: the task runners: any iterable, async iterable or pull object
            (``SourceBufferObj``, ``PushPullBufferObj.source``, an async generator...).
            It is read one task ahead of capacity: the next task is taken from the
            source, then capacity is acquired, then it starts, so no capacity is held
            while the source waits for work.
        capacity: one unit per running task; its parents are acquired too. A
            capacity that admits no task for :attr:`stall_warning` seconds (5.0)
            while none of the runner's tasks runs (``CapacitySource(0)``, a unit
            costing more than a resource parent allows, units all held elsewhere)
            gets a ``RuntimeWarning`` naming it and the level that is too small.
            An int ``n`` stands for ``CapacitySource(n)``.
        executor: ``"inline"`` (default), ``"thread"``, ``"process"``, ``"ray"`` or an
            :class:`Executor`. A name builds an executor owned (and closed) by each
            run; an object is started if needed and left open.
        workers: with ``executor="thread"`` or ``"process"``, the size of the pool
            each run builds (its ``max_workers``; default: the usable CPUs). A
            ``ValueError`` with any other executor (an object has its own size).
        timeout: seconds each task may run; then it is cancelled and gets an ERROR
            envelope with :class:`TaskTimeoutError`. The clock starts when the task
            starts running (``TaskEvents.task_started``; at submit for an executor
            that does not report starts), so time queued behind other tasks in a
            worker does not count. One exception keeps a task from hanging: with
            the process executor, a task submitted while no worker is ready (they
            are starting, e.g. in their initializer) is timed from submit until a
            worker takes it. Cancelling a task that has not started ends it at once.
        max_unread: how many envelopes may wait unread before the runner stops
            starting tasks (eager execution with a bounded results buffer).
        metrics: a :class:`~pullpush.RunnerMetricsCollector` to report tasks
            queued, running, completed and failed, their durations and the
            envelope rate to (``None``, the default: no hook is called).
    """

    def __init__(
        self,
        name: str,
        source: Any,
        capacity: CapacitySource | int,
        *,
        executor: ExecutorSpec = "inline",
        timeout: float | None = None,
        max_unread: int = 1024,
        metrics: RunnerMetricsCollector | None = None,
        workers: int | None = None,
    ) -> None:
        if isinstance(capacity, int) and not isinstance(capacity, bool):
            capacity = CapacitySource(check_int("capacity", capacity, minimum=1))
        if not isinstance(capacity, CapacitySource):
            raise TypeError(
                f"capacity must be a CapacitySource or an int, got {type(capacity).__name__}"
            )
        super().__init__(
            name,
            source,
            executor=executor,
            timeout=timeout,
            max_unread=max_unread,
            metrics=metrics,
            workers=workers,
        )
        self.capacity = capacity
        # A task taken from the source whose capacity is not acquired yet.
        self._held: Any = _NONE

    def _rejected(self, runner: Any) -> TaskProgressEnvelope:
        error = TypeError(f"a task runner must be callable, got {type(runner).__name__}")
        return make_envelope(_ERROR, self._new_id(), None, None, error)

    def _dispatch_now(self) -> int:
        # The common case, with no await at all: a source that never waits, and an
        # executor slot and a unit of capacity free right now.
        runner = self._held
        if runner is _NONE:
            if not self._feed.never_waits:
                return _MUST_WAIT
            runner = self._feed.next_now()
            if runner is _END:
                return _ENDED
            if not callable(runner):
                self._failed += 1
                if self.metrics is not None:  # metrics
                    self.metrics.on_task_rejected()
                self._emit(self._rejected(runner))
                return _STARTED
        executor = self._executor
        assert executor is not None
        slots = executor.capacity
        capacity = self.capacity
        if slots is not None and not slots.acquire_nowait():
            self._held = runner
            return _MUST_WAIT
        if not capacity.acquire_nowait():
            if slots is not None:
                slots.release()
            self._held = runner
            return _MUST_WAIT
        self._held = _NONE
        self._launch(runner, slots, None, self.timeout, None)
        return _STARTED

    async def _next_start(self) -> _Start | TaskProgressEnvelope | None:
        runner = self._held
        self._held = _NONE
        if runner is _NONE:
            runner = await self._feed.next()
            if runner is _END:
                return None
            if not callable(runner):
                return self._rejected(runner)
        try:
            slots = await self._acquire_slot()
        except BaseException:
            self._held = runner  # cancelled while waiting: keep the task for later
            raise
        try:
            capacity = self.capacity
            await self._acquire_capacity(capacity.acquire(), capacity, 1)
        except BaseException:
            _release_slot(slots)
            self._held = runner
            raise
        return _Start(runner, slots, None, self.timeout)

    def _release(self, record: _Running) -> None:
        self.capacity.release()
        if record.slots is not None:
            record.slots.release()


class ScheduledTaskPoolRunner(_PoolRunner[K]):
    """Run :class:`ScheduledTask` objects with multi-resource costs.

    Protocol per task: peek at the head task, check that its cost is possible at all
    (an impossible cost gets an ERROR envelope with :class:`ImpossibleCostError` at
    once), acquire it, start it, release it when the task ends, call ``on_complete``
    or ``on_error``, then emit the envelope.

    Args:
        name: used in ``repr`` and errors.
        source: ScheduledTasks: any iterable, async iterable or pull object; a
            ``peek()`` method is used when present.
        capacity: the :class:`ResourceCapacitySource` costs are acquired from; an
            int ``n`` stands for ``ResourceCapacitySource({"capacity": n})``, which
            tasks of the default cost (``{"capacity": 1}``) take one unit of.
        executor, timeout, max_unread, metrics, workers: as for
            :class:`HierarchicalTaskPoolRunner`.
        backfill: when the head task cannot be afforded now, start the first of the
            next ``backfill`` tasks that can (0, the default, keeps strict order).
        retry: for a dependency source (one with ``complete``/``fail``/``abort``, e.g.
            :class:`DependencySourceObj`), how failed tasks are retried before their
            node is aborted with its dependents. It applies only to failures whose
            ``on_error`` left the node running.
        auto_wire: call ``complete``/``fail``/``abort`` on such a source (default
            true); FINAL completes the node, ERROR retries or aborts it.

    With a dependency source, a task's callbacks decide first: ``on_complete`` or
    ``on_error`` is called while the task's node is still running, so it may call
    ``source.complete(key)``, ``source.fail(key)`` (run it again) or
    ``source.abort(key)`` itself (the original library's bridge and retry patterns).
    When the callback returns (or raises: its exception goes to the event loop's
    exception handler) and the node is still running, auto-wiring decides: FINAL
    completes it, ERROR retries it under ``retry`` or aborts it. The node's state
    is read from the source's ``dependency_graph``; a source without one is taken
    to have left the node running. Every failed attempt has its own ERROR envelope
    (each attempt is a task with its own id); with ``stop_on_error=True`` only the
    error of a node that will not run again (aborted, completed, or not wired) is
    raised. Dependents of an aborted node never start and have no envelope; their
    nodes are ``aborted`` in the graph.
    """

    def __init__(
        self,
        name: str,
        source: Any,
        capacity: ResourceCapacitySource | int,
        *,
        executor: ExecutorSpec = "inline",
        timeout: float | None = None,
        max_unread: int = 1024,
        backfill: int = 0,
        retry: RetryPolicy | None = None,
        auto_wire: bool = True,
        metrics: RunnerMetricsCollector | None = None,
        workers: int | None = None,
    ) -> None:
        if isinstance(capacity, int) and not isinstance(capacity, bool):
            limit = check_int("capacity", capacity, minimum=1)
            capacity = ResourceCapacitySource({"capacity": limit})
        if not isinstance(capacity, ResourceCapacitySource):
            raise TypeError(
                "capacity must be a ResourceCapacitySource or an int, "
                f"got {type(capacity).__name__}"
            )
        super().__init__(
            name,
            source,
            executor=executor,
            timeout=timeout,
            max_unread=max_unread,
            metrics=metrics,
            workers=workers,
        )
        self.capacity = capacity
        self.backfill = check_int("backfill", backfill, minimum=0)
        self.retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        wired = all(callable(getattr(source, m, None)) for m in ("complete", "fail", "abort"))
        self._graph: Any = source if (auto_wire and wired) else None
        self._peek: Callable[[], Any] | None = getattr(source, "peek", None)
        # Tasks taken from the source but not started yet, head first.
        self._lookahead: deque[Any] = deque()
        self._attempts: dict[Any, int] = {}
        self._retry_timers: set[asyncio.TimerHandle] = set()

    @property
    def listens_for_starts(self) -> bool:
        return True  # a ScheduledTask may have its own timeout

    # -- choosing the next task ---------------------------------------------------------------

    async def _head(self) -> Any:
        """The next task without consuming it (``_END`` when the source is done)."""
        if self._lookahead:
            return self._lookahead[0]
        if self._peek is not None:
            head = self._peek()
            if head is not None:
                return head
        task = await self._feed.next()
        if task is not _END:
            self._lookahead.append(task)
        return task

    async def _take(self) -> Any:
        """Consume the head task (the one ``_head`` returned, unless the source changed)."""
        if self._lookahead:
            return self._lookahead.popleft()
        task = await self._feed.next()
        return task if task is not _END else None

    def _check(self, task: Any) -> BaseException | None:
        """Why ``task`` can never run (its ERROR envelope's error), else ``None``.

        Only the caller that emits the rejection takes an id for it, so a task checked
        more than once (as a backfill candidate, then as the head) uses one id.
        """
        if not isinstance(task, ScheduledTask):
            return TypeError(
                f"the source must yield ScheduledTask objects, got {type(task).__name__}"
            )
        error: BaseException
        if not callable(task.runner):
            error = TypeError(f"task {task.key!r}: runner must be callable")
        else:
            cost = task.cost if task.cost is not None else DEFAULT_COST
            try:
                possible = self.capacity.validate_cost(cost)
            except (TypeError, ValueError) as invalid:
                error = invalid
            else:
                if possible:
                    return None
                error = ImpossibleCostError(
                    f"task {task.key!r}: cost {dict(cost)!r} exceeds the limits of "
                    f"capacity {self.capacity!r}"
                )
        return error

    def _start(
        self, task: ScheduledTask[K], slots: CapacitySource | None, held: Any = None
    ) -> _Start:
        """Start ``task``: acquire its cost now, or use ``held``, the cost already
        acquired for it while waiting for capacity."""
        if held is not None:
            cost = held
        else:
            cost = task.cost if task.cost is not None else DEFAULT_COST
            self.capacity.acquire_immediate(cost)
        timeout = task.timeout if task.timeout is not None else self.timeout
        return _Start(task.runner, slots, task.key, timeout, task, cost)

    def _release(self, record: _Running) -> None:
        self.capacity.release(record.cost)
        if record.slots is not None:
            record.slots.release()

    def task_resources(self, task_id: int, usage: Any) -> None:
        """Reconcile a running task's cost with what its executor measured.

        Only resources the cost names are corrected (a ``memory_mb`` estimate with a
        measured peak, say); the task then releases the measured amounts.
        """
        record = self._running.get(task_id)
        if record is None or record.cost is None:
            return
        estimated = record.cost
        measured = {k: float(v) for k, v in usage.items() if k in estimated}
        if not measured:
            return
        actual = {**estimated, **measured}
        try:
            self.capacity.reconcile(estimated, actual)
        except (ValueError, PullPushError) as error:
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"could not reconcile task {task_id}'s cost", "exception": error}
            )
            return
        record.cost = actual

    async def _next_start(self) -> _Start | TaskProgressEnvelope | None:
        slots = await self._acquire_slot()
        try:
            while True:
                head = await self._head()
                if head is _END:
                    _release_slot(slots)
                    return None
                problem = self._check(head)
                if problem is not None:
                    await self._take()
                    _release_slot(slots)
                    key = head.key if isinstance(head, ScheduledTask) else None
                    return make_envelope(_ERROR, self._new_id(), key, None, problem)
                cost = head.cost if head.cost is not None else DEFAULT_COST
                if self.capacity.can_acquire(cost):
                    task = await self._take()
                    if task is head or task is None:
                        return self._start(head, slots)
                    # A dynamic source handed over another task than it showed: it
                    # becomes the head and is checked afresh.
                    self._lookahead.appendleft(task)
                    continue
                backfilled = await self._backfill()
                if backfilled is not None:
                    return self._start(backfilled, slots)
                if await self._wait_for_capacity(cost):
                    # The head's cost is held now: it is the head's, unless a dynamic
                    # source hands over another task, which then goes through the
                    # checks afresh while the cost goes back unused.
                    try:
                        task = await self._take()
                    except BaseException:
                        self._give_back(cost)
                        raise
                    if task is head or task is None:
                        return self._start(head, slots, held=cost)
                    self._give_back(cost)
                    self._lookahead.appendleft(task)
        except BaseException:
            _release_slot(slots)
            raise

    async def _backfill(self) -> ScheduledTask[K] | None:
        """Take the first affordable task among the ``backfill`` behind the head."""
        if not self.backfill:
            return None
        lookahead = self._lookahead
        if not lookahead:  # the head was only peeked: hold it so the source shows the next
            head = await self._feed.next()
            if head is _END:
                return None
            lookahead.append(head)
        while len(lookahead) <= self.backfill and self._ready_now():
            task = await self._feed.next()
            if task is _END:
                break
            lookahead.append(task)
        for position in range(1, min(len(lookahead), self.backfill + 1)):
            task = lookahead[position]
            if self._check(task) is not None:
                continue  # rejected when it reaches the head
            cost = task.cost if task.cost is not None else DEFAULT_COST
            if self.capacity.can_acquire(cost):
                del lookahead[position]
                return task  # type: ignore[no-any-return]
        return None

    def _ready_now(self) -> bool:
        """Whether the source can hand over a task without waiting."""
        if self._feed.never_waits:
            return True
        return self._peek is not None and self._peek() is not None

    async def _wait_for_capacity(self, cost: Any) -> bool:
        """Wait until the capacity may afford ``cost`` (or a backfill candidate);
        return whether ``cost`` is now held for the head task.

        Without backfill, the wait is a FIFO ``acquire`` of the head's cost, queued
        with everyone else's, and the cost it takes is the head's (the caller starts
        the head with it or gives it back). Waiting must not consume what it waits
        for: an acquire followed by a ``release`` would use up a
        :class:`~pullpush.QuotaCapacitySource`'s budget, whose releases restore nothing.
        """
        if self.backfill:
            await self.capacity.wait_obj.wait()
            return False
        capacity = self.capacity
        await self._acquire_capacity(capacity.acquire(cost), capacity, cost)
        return True

    def _give_back(self, cost: Any) -> None:
        """Return ``cost``, acquired and never used, at every level, a quota included
        (a reconcile to zero use: unlike ``release`` it restores a quota's budget)."""
        self.capacity.reconcile(cost, dict.fromkeys(cost, 0))

    # -- wiring results back to the source -----------------------------------------------------

    def _node_state(self, key: Any) -> Any:
        """The state of ``key``'s node in the wired source: ``RUNNING`` when the source
        does not show its graph (as ``dependency_graph``), ``None`` for a key it lacks."""
        graph = getattr(self._graph, "dependency_graph", None)
        if graph is None:
            return NodeState.RUNNING
        try:
            return graph.get_state(key)
        except PullPushError:
            return None

    def _on_final(self, record: _Running, value: Any) -> BaseException | None:
        # The task's on_complete runs first, with the node still running, so it may
        # decide (complete it, the documented bridge pattern, or fail/abort it); the
        # runner completes the node only if the callback left it running.
        task = record.scheduled
        assert task is not None
        self._attempts.pop(task.key, None)
        problem: BaseException | None = None
        if task.on_complete is not None:
            try:
                task.on_complete(task.key, value)
            except Exception as error:
                problem = error
        if self._graph is not None and self._node_state(task.key) == NodeState.RUNNING:
            try:
                self._graph.complete(task.key)
            except Exception as error:
                problem = problem if problem is not None else error
        return problem

    def _on_error(self, record: _Running, error: BaseException) -> bool:
        # The task's on_error runs first, with the node still running, so it may
        # decide (the documented pattern: fail() to retry, abort() to give up, or
        # complete()); the runner's retry policy applies only if the callback left
        # the node running (or raised before deciding).
        task = record.scheduled
        assert task is not None
        if task.on_error is not None:
            try:
                task.on_error(task.key, error)
            except Exception as callback_error:
                # The task's ERROR envelope still goes out; the callback's own failure
                # is reported the way asyncio reports errors nobody awaits.
                asyncio.get_running_loop().call_exception_handler(
                    {
                        "message": f"on_error callback of task {task.key!r} raised",
                        "exception": callback_error,
                    }
                )
        if self._graph is None:
            return True
        key = task.key
        attempt = self._attempts.get(key, 0) + 1
        state = self._node_state(key)
        if state != NodeState.RUNNING:
            # The callback decided. A node sent back to ready runs again (this attempt
            # counts towards max_attempts, should the runner decide a later one); an
            # aborted or completed node is done.
            if state in (NodeState.READY, NodeState.PENDING):
                self._attempts[key] = attempt
                return False
            self._attempts.pop(key, None)
            return True
        if self.retry.should_retry(attempt, error) and not self._closing:
            self._attempts[key] = attempt
            self._schedule_retry(key, self.retry.delay(attempt))
            return False
        self._attempts.pop(key, None)
        self._graph.abort(key)
        return True

    def _schedule_retry(self, key: Any, delay: float) -> None:
        graph = self._graph
        if delay <= 0:
            graph.fail(key)
            return

        def retry() -> None:
            self._retry_timers.discard(timer)
            if self._node_state(key) == NodeState.RUNNING:  # unless decided meanwhile
                graph.fail(key)

        timer = asyncio.get_running_loop().call_later(delay, retry)
        self._retry_timers.add(timer)

    def _on_shutdown(self) -> None:
        for timer in self._retry_timers:
            timer.cancel()
        self._retry_timers.clear()
