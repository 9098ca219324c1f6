"""A test executor with a queue per worker that honours the successor contract
(``Executor.queues_successors``): the model of the process executor's capacity
hand-off, without processes.

``workers`` workers each run up to ``tasks_per_worker`` tasks at once and queue up to
``prefetch`` successors. A task submitted without ``after`` starts on a worker with a
free place (or waits in the executor's pending queue, for standalone use beyond the
slots); one submitted with ``after=handle`` waits in that task's worker and starts as
soon as it ended, after its end was reported. Task runners are plain callables (run
at start) or return an awaitable (run as an asyncio task).

Every start and end calls ``observe()`` (a test's invariant check) once the executor
is consistent again; ``crash(worker)`` fails the tasks a worker runs, as a dying
process does, and starts their successors (sent again to the respawned worker).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from pullpush import CapacitySource
from pullpush.executors import Executor, TaskEvents
from pullpush.executors._base import BaseTaskHandle


class Crashed(RuntimeError):
    """What a task running in a crashed worker ends with."""


class _Task(BaseTaskHandle):
    __slots__ = (
        "_executor",
        "after",
        "awaitable",
        "job",
        "runner",
        "started",
        "successor",
        "worker",
    )

    def __init__(self, executor: QueueExecutor, task_id: int, runner: Any, events: Any) -> None:
        super().__init__(task_id, events, executor._forget)
        self.runner = runner
        self.worker: _Worker | None = None
        self.after: _Task | None = None
        self.successor: _Task | None = None
        self.started = False
        self.job: asyncio.Task[Any] | None = None
        self.awaitable: Any = None
        self._executor = executor

    def cancel(self, error: BaseException | None = None) -> None:
        if self.request_cancel(error):
            self._executor._cancel(self)

    def ack(self, count: int = 1) -> None:
        pass


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.running: list[_Task] = []
        self.queued: list[_Task] = []


class QueueExecutor(Executor):
    name = "queue"
    reports_starts = True
    queues_successors = True

    def __init__(
        self,
        workers: int = 1,
        *,
        tasks_per_worker: int = 1,
        prefetch: int = 2,
        observe: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.tasks_per_worker = tasks_per_worker
        self.prefetch = prefetch
        self.workers = [_Worker(i) for i in range(workers)]
        self._capacity = CapacitySource(workers * tasks_per_worker)
        self._pending: deque[_Task] = deque()
        self.observe = observe
        self.successors = 0  # tasks submitted with after=
        self.started_order: list[tuple[Any, int]] = []  # (events, task_id) in start order
        self.running_by: Counter[int] = Counter()  # id(events) -> tasks running

    @property
    def capacity(self) -> CapacitySource:
        return self._capacity

    @property
    def running(self) -> int:
        return sum(len(w.running) for w in self.workers)

    def successor_room(self, handle: Any) -> bool:
        worker = handle.worker
        return (
            worker is not None
            and not handle.ended
            and handle.successor is None
            and len(worker.queued) < self.prefetch
        )

    def submit(self, task_id: int, runner: Any, events: TaskEvents, *, after: Any = None) -> _Task:
        if self._closed:
            raise RuntimeError("closed")
        task = _Task(self, task_id, runner, events)
        if after is not None:
            assert not after.ended and after.successor is None and after.worker is not None
            assert len(after.worker.queued) < self.prefetch, "no room behind that task"
            self.successors += 1
            task.after = after
            after.successor = task
            task.worker = after.worker
            after.worker.queued.append(task)
            return task
        for worker in self.workers:
            if len(worker.running) < self.tasks_per_worker:
                self._run(worker, task)
                return task
        self._pending.append(task)
        return task

    def _run(self, worker: _Worker, task: _Task) -> None:
        assert task.after is None, "a successor started before its predecessor ended"
        task.worker = worker
        task.started = True
        worker.running.append(task)
        self.running_by[id(task.events)] += 1
        self.started_order.append((task.events, task.task_id))
        task.events.task_started(task.task_id)
        try:
            result = task.runner()
        except BaseException as error:  # the task's own error
            self._finish(task, error, None)
            return
        if inspect.isawaitable(result):
            task.awaitable = result
            task.job = asyncio.ensure_future(self._await(task, result))
        else:
            self._finish(task, None, result)
            return
        self._observe()

    async def _await(self, task: _Task, awaitable: Any) -> None:
        try:
            value = await awaitable
        except BaseException as error:  # the task's own error, or its cancel
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # cancelled before it ever ran
            self._finish(task, error, None)
        else:
            self._finish(task, None, value)

    def _finish(self, task: _Task, error: BaseException | None, value: Any) -> None:
        if task.ended:
            return
        worker = task.worker
        assert worker is not None
        worker.running.remove(task)
        self.running_by[id(task.events)] -= 1
        task.report_end(error, value)  # the runner hands its capacity over now
        self._next(worker, task)

    def _next(self, worker: _Worker, task: _Task) -> None:
        successor = task.successor
        task.successor = None
        if successor is not None:
            successor.after = None
            worker.queued.remove(successor)
            self._run(worker, successor)
        while self._pending and len(worker.running) < self.tasks_per_worker:
            self._run(worker, self._pending.popleft())
        self._observe()

    def _forget(self, task: _Task) -> None:
        pass

    def _cancel(self, task: _Task) -> None:
        if task.started:
            if task.job is not None:
                task.job.cancel()
            return
        if task in self._pending:
            self._pending.remove(task)
        elif task.after is not None:
            # Queued behind its predecessor: it leaves the chain, its successor moves up.
            assert task.worker is not None
            task.worker.queued.remove(task)
            before, successor = task.after, task.successor
            before.successor = successor
            if successor is not None:
                successor.after = before
            task.after = task.successor = None
        task.report_end(None)
        self._observe()

    def crash(self, index: int) -> int:
        """Fail what worker ``index`` runs (its queued successors survive, sent again to
        the respawned worker); return how many tasks failed."""
        worker = self.workers[index]
        victims = list(worker.running)
        for task in victims:
            if task.job is not None:
                task.job.cancel()  # its own end is not reported: the task is ended below
                if inspect.iscoroutine(task.awaitable):
                    task.awaitable.close()  # it may never have run
            worker.running.remove(task)
            self.running_by[id(task.events)] -= 1
            task.report_end(Crashed(f"worker {index} crashed running task {task.task_id}"))
            self._next(worker, task)
        return len(victims)

    def _observe(self) -> None:
        if self.observe is not None:
            self.observe()

    async def _aclose(self) -> None:
        for worker in self.workers:
            for task in list(worker.running):
                task.cancel()
        for _ in range(100):
            if not self.running:
                break
            await asyncio.sleep(0)
