"""The task pool runner of :class:`ScheduledTask` objects with multi-resource costs,
backfill, and retries wired to a dependency source."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import ImpossibleCostError, PullPushError
from .._util import check_int
from ..capacity import CapacitySource, ResourceCapacitySource
from ..scheduling import NodeState
from ._envelope import EnvelopeType, TaskProgressEnvelope, make_envelope
from ._feed import END
from ._pool import PoolRunner
from ._task import (
    DEFAULT_COST,
    RetryPolicy,
    Running,
    ScheduledTask,
    Start,
    TaskSource,
    release_slot,
)
from ._waitable import Waitable
from ._waiting import _Preempted

if TYPE_CHECKING:
    from ..executors import ExecutorSpec
    from ..metrics import RunnerMetricsCollector

__all__ = ["ScheduledTaskPoolRunner"]

K = TypeVar("K")

_ERROR = EnvelopeType.ERROR


class ScheduledTaskPoolRunner(PoolRunner[Any, K]):
    """Run :class:`ScheduledTask` objects with multi-resource costs.

    Generic (for the type checker) in the tasks' key type ``K``, inferred from the
    source (``ScheduledTask[K]`` items): ``run_tasks()`` yields
    ``TaskProgressEnvelope[Any, K]``.

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
            :class:`HierarchicalTaskPoolRunner` (waitable tasks included: a task
            waiting in ``receive()`` gives back its whole cost and re-acquires it,
            ahead of new tasks, before it resumes; :meth:`send` takes its key).
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
        source: TaskSource[ScheduledTask[K]],
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
        """The next task without consuming it (``END`` when the source is done)."""
        if self._lookahead:
            return self._lookahead[0]
        if self._peek is not None:
            head = self._peek()
            if head is not None:
                return head
        task = await self._feed.next()
        if task is not END:
            self._lookahead.append(task)
        return task

    async def _take(self) -> Any:
        """Consume the head task (the one ``_head`` returned, unless the source changed)."""
        if self._lookahead:
            return self._lookahead.popleft()
        task = await self._feed.next()
        return task if task is not END else None

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
    ) -> Start:
        """Start ``task``: acquire its cost now, or use ``held``, the cost already
        acquired for it while waiting for capacity."""
        if held is not None:
            cost = held
        else:
            cost = task.cost if task.cost is not None else DEFAULT_COST
            self.capacity.acquire_immediate(cost)
        timeout = task.timeout if task.timeout is not None else self.timeout
        return Start(task.runner, slots, task.key, timeout, task, cost)

    async def _reacquire(self, record: Running) -> None:
        capacity = self.capacity
        await self._acquire_capacity(capacity.acquire(record.cost), capacity, record.cost)

    def _release(self, record: Running) -> None:
        self.capacity.release(record.cost)
        if record.slots is not None:
            record.slots.release()

    def _may_hand_off(self) -> bool:
        # Not through a quota: its released budget restores nothing, so a cost passed
        # on would run a second task on one task's budget.
        return all(getattr(level, "_restores_on_release", True) for level in self.capacity._chain)

    def _hand_over(self, record: Running, successor: Running) -> None:
        """The successor holds its own cost from now on: what ``record`` held (its
        estimate, or what :meth:`task_resources` reconciled it to) is reconciled back
        to the successor's estimate, which was equal to ``record``'s when it was
        queued."""
        successor.slots = record.slots
        held = record.cost
        if held != successor.cost:
            try:
                self.capacity.reconcile(held, successor.cost)
            except (ValueError, PullPushError):
                successor.cost = held

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

    async def _next_start(self) -> Start | TaskProgressEnvelope[Any, Any] | None:
        while True:
            if self._follows and self._running:
                follow = await self._follow_head()
                if follow is not None:
                    return follow
            executor = self._executor
            assert executor is not None
            slots = executor.capacity
            # False: a task of this runner ended or reached its worker, so the head may
            # be queued behind one (above).
            if slots is None or await self._acquire_or_wake(slots):
                break
        try:
            while True:
                head = await self._head()
                if head is END:
                    release_slot(slots)
                    return None
                problem = self._check(head)
                if problem is not None:
                    await self._take()
                    release_slot(slots)
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
            release_slot(slots)
            raise

    async def _follow_head(self) -> Start | None:
        """The head task queued behind a task of this runner of the same cost, holding
        nothing (the capacity hand-off, see :mod:`pullpush.runners._handoff`), if the
        executor has room there now; ``None`` otherwise (nor is the source waited
        for: the head is looked at only if it is at hand)."""
        if not self._lookahead and not self._ready_now():
            return None
        head = await self._head()
        if head is END or self._check(head) is not None:
            return None  # the usual path ends the run or rejects it
        if head.runner.__class__ is Waitable:
            return None  # waitable tasks take no part in the hand-off
        cost = head.cost if head.cost is not None else DEFAULT_COST
        after = self._follow(cost)
        if after is None:
            return None
        task = await self._take()
        if task is not head:
            if task is not None:  # a dynamic source handed over another task
                self._lookahead.appendleft(task)
            return None
        timeout = head.timeout if head.timeout is not None else self.timeout
        return Start(head.runner, None, head.key, timeout, head, cost, after=after)

    async def _backfill(self) -> ScheduledTask[K] | None:
        """Take the first affordable task among the ``backfill`` behind the head."""
        if not self.backfill:
            return None
        lookahead = self._lookahead
        if not lookahead:  # the head was only peeked: hold it so the source shows the next
            head = await self._feed.next()
            if head is END:
                return None
            lookahead.append(head)
        while len(lookahead) <= self.backfill and self._ready_now():
            task = await self._feed.next()
            if task is END:
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
            if self._resumes:
                raise _Preempted  # resuming tasks first (the slot goes back meanwhile)
            return False
        capacity = self.capacity
        await self._acquire_capacity(
            capacity.acquire(cost), capacity, cost, lambda _: self._give_back(cost)
        )
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

    def _on_final(self, record: Running, value: Any) -> BaseException | None:
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

    def _on_error(self, record: Running, error: BaseException) -> bool:
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
