"""The task pool runner with one unit of a :class:`CapacitySource` per task."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._util import check_int
from ..capacity import CapacitySource
from ._envelope import EnvelopeType, TaskProgressEnvelope, V, make_envelope
from ._feed import END
from ._pool import ENDED, MUST_WAIT, STARTED, PoolRunner
from ._task import Running, Start, TaskSource, release_slot
from ._waitable import Waitable

if TYPE_CHECKING:
    from ..executors import ExecutorSpec
    from ..metrics import RunnerMetricsCollector

__all__ = ["HierarchicalTaskPoolRunner"]

R = TypeVar("R")
Y = TypeVar("Y")

_ERROR = EnvelopeType.ERROR
_NONE: Any = object()  # no task held back


class HierarchicalTaskPoolRunner(PoolRunner[V, None]):
    """Run task runners with one unit of a :class:`CapacitySource` each.

    Generic (for the type checker) in the type ``V`` of its envelopes' ``value``,
    inferred from the source's task runners: ``run_tasks()`` yields
    ``TaskProgressEnvelope[V, None]`` where a task runner returns ``V`` or an
    awaitable of ``V``, or is a generator yielding and returning ``V``
    (``Generator[Y, Any, R]`` gives ``V = Y | R``); ``Any`` for async-generator task
    runners and sources whose item type is not known. Spell it out where inference
    cannot: ``runner: HierarchicalTaskPoolRunner[int] = HierarchicalTaskPoolRunner(...)``.

    Args:
        name: used in ``repr`` and errors.
        source: the task runners: any iterable, async iterable or pull object
            (``SourceBufferObj``, ``PushPullBufferObj.source``, an async generator...).
            It is read one task ahead of capacity: the next task is taken from the
            source, then capacity is acquired, then it starts, so no capacity is held
            while the source waits for work.
        capacity: one unit per running task; its parents are acquired too. With
            the process executor, the next tasks wait in the workers' queues behind
            running ones holding none: a task's unit passes to the task behind it
            when it ends (the capacity hand-off, see :mod:`pullpush.runners._handoff`;
            never through a quota, never for waitable tasks). A
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
            A waitable task's clock counts active time only: it stops while the task
            waits in ``receive()`` (bound that wait with ``receive(timeout=...)``).
        max_unread: how many envelopes may wait unread before the runner stops
            starting tasks (eager execution with a bounded results buffer).
        metrics: a :class:`~pullpush.RunnerMetricsCollector` to report tasks
            queued, running, completed and failed, their durations and the
            envelope rate to (``None``, the default: no hook is called).

    Waitable tasks (:func:`~pullpush.waitable`; inline, thread, process executors): a task
    waiting in ``ctx.receive()`` holds no capacity at any level and no executor slot
    (a WAITING envelope); :meth:`send` / :meth:`send_nowait` deliver its messages,
    and it re-acquires its unit (ahead of new tasks) before it resumes (a RESUMED
    envelope). Cancelling a waiting task gives back nothing: it holds nothing.
    """

    # The overloads only infer V (first match wins: async generators, then generators,
    # then awaitables, then any other result).
    @overload
    def __init__(
        self: HierarchicalTaskPoolRunner[Any],
        name: str,
        source: TaskSource[Callable[[], AsyncGenerator[Any, Any]]],
        capacity: CapacitySource | int,
        *,
        executor: ExecutorSpec = ...,
        timeout: float | None = ...,
        max_unread: int = ...,
        metrics: RunnerMetricsCollector | None = ...,
        workers: int | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: HierarchicalTaskPoolRunner[Y | R],
        name: str,
        source: TaskSource[Callable[[], Generator[Y, Any, R]]],
        capacity: CapacitySource | int,
        *,
        executor: ExecutorSpec = ...,
        timeout: float | None = ...,
        max_unread: int = ...,
        metrics: RunnerMetricsCollector | None = ...,
        workers: int | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: HierarchicalTaskPoolRunner[R],
        name: str,
        source: TaskSource[Callable[[], Awaitable[R]]],
        capacity: CapacitySource | int,
        *,
        executor: ExecutorSpec = ...,
        timeout: float | None = ...,
        max_unread: int = ...,
        metrics: RunnerMetricsCollector | None = ...,
        workers: int | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: HierarchicalTaskPoolRunner[R],
        name: str,
        source: TaskSource[Callable[[], R]],
        capacity: CapacitySource | int,
        *,
        executor: ExecutorSpec = ...,
        timeout: float | None = ...,
        max_unread: int = ...,
        metrics: RunnerMetricsCollector | None = ...,
        workers: int | None = ...,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        source: TaskSource[Callable[[], Any]],
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

    def _rejected(self, runner: Any) -> TaskProgressEnvelope[Any, None]:
        error = TypeError(f"a task runner must be callable, got {type(runner).__name__}")
        return make_envelope(_ERROR, self._new_id(), None, None, error)

    def _dispatch_now(self) -> int:
        # The common case, with no await at all: a source that never waits, and an
        # executor slot and a unit of capacity free right now.
        runner = self._held
        if runner is _NONE:
            if not self._feed.never_waits:
                return MUST_WAIT
            runner = self._feed.next_now()
            if runner is END:
                return ENDED
            if not callable(runner):
                self._failed += 1
                if self.metrics is not None:  # metrics
                    self.metrics.on_task_rejected()
                self._emit(self._rejected(runner))
                return STARTED
        executor = self._executor
        assert executor is not None
        slots = executor.capacity
        capacity = self.capacity
        if slots is not None and not slots.acquire_nowait():
            return self._follow_now(runner)
        if not capacity.acquire_nowait():
            if slots is not None:
                slots.release()
            return self._follow_now(runner)
        self._held = _NONE
        self._launch(runner, slots, None, self.timeout, None)
        return STARTED

    def _follow_now(self, runner: Any) -> int:
        """No capacity now: queue ``runner`` behind a task of this runner's if the
        executor has room there (the capacity hand-off), else hold it back."""
        after = self._follow(None) if self._follows and runner.__class__ is not Waitable else None
        if after is None:
            self._held = runner
            return MUST_WAIT
        self._held = _NONE
        self._launch(runner, None, None, self.timeout, None, after=after)
        return STARTED

    async def _next_start(self) -> Start | TaskProgressEnvelope[Any, None] | None:
        runner = self._held
        self._held = _NONE
        if runner is _NONE:
            runner = await self._feed.next()
            if runner is END:
                return None
            if not callable(runner):
                return self._rejected(runner)
        capacity = self.capacity
        while True:
            if self._follows and runner.__class__ is not Waitable:
                after = self._follow(None)
                if after is not None:
                    return Start(runner, None, None, self.timeout, after=after)
            executor = self._executor
            assert executor is not None
            slots = executor.capacity
            try:
                # A False: a task of this runner ended, so it may be followed (below).
                if slots is not None and not await self._acquire_or_wake(slots):
                    continue
            except BaseException:
                self._held = runner  # cancelled while waiting: keep the task for later
                raise
            try:
                taken = await self._acquire_capacity(
                    self._acquire_or_wake(capacity), capacity, 1, self._give_back
                )
            except BaseException:
                release_slot(slots)
                self._held = runner
                raise
            if taken:
                return Start(runner, slots, None, self.timeout)
            release_slot(slots)

    def _may_hand_off(self) -> bool:
        # Not through a quota: its released units restore nothing, so a unit passed on
        # would run a second task on one unit of budget.
        return all(getattr(level, "_restores_on_release", True) for level in self.capacity._chain)

    def _give_back(self, taken: Any) -> None:
        # What the capacity's acquire returned (units left), or _acquire_or_wake's
        # True; its False: woken, nothing was taken.
        if taken is not False:
            self.capacity.release()

    async def _reacquire(self, record: Running) -> None:
        capacity = self.capacity
        await self._acquire_capacity(capacity.acquire(), capacity, 1)

    def _release(self, record: Running) -> None:
        self.capacity.release()
        if record.slots is not None:
            record.slots.release()
