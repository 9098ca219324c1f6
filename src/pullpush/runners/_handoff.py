"""The capacity hand-off of a pool runner: queueing a task in a worker behind another
of the runner's tasks, holding nothing.

Capacity follows running tasks (SPEC 3), yet a process worker need not wait for its
next task: the **capacity hand-off**. The executor's slots (its :attr:`capacity`:
workers x tasks per worker) are the places where tasks run, and a runner holds one,
with a unit of its own capacity, per task that runs. A task beyond them may be queued
in a worker only behind a task of the same runner and the same cost (its
*predecessor*, running or itself queued: a chain), holding nothing; when the
predecessor ends, its slot and unit pass to that *successor* without going back to
the capacity tree, and the worker starts it with no round trip. So at every instant
the units held are those of tasks running or being handed over. Rules:

* the dispatcher queues a successor only when the executor says it has room behind
  that task (:meth:`Executor.successor_room`: its prefetch, bounded in tasks and
  bytes) and no acquire waits anywhere in the capacity tree or for the executor's
  slots: a waiter of another branch is never passed by a chain, which is at most the
  prefetch deep;
* a successor cancelled while queued gave back nothing (it held nothing) and its own
  successor moves up behind its predecessor; a predecessor cancelled, failed or
  crashed hands over all the same (a crashed worker's queued tasks are sent again,
  the first holding what it inherited);
* while the dispatcher waits for capacity and could queue behind a task instead, each
  task end of the runner wakes it (a place behind a chain may have freed), and so
  does each of its tasks reaching a worker (``TaskEvents.task_placed``);
* a capacity whose release restores nothing (a quota) never hands over: a unit of
  budget is spent once per task;
* waitable tasks take no part: none is queued behind one (it gives its capacity
  back while it waits, and its worker would start the next task meanwhile), none
  is queued as a successor, and no successor is queued while a task waits to
  resume (resumes go first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections import deque

    from .._sync import ParkingLot
    from ..capacity import CapacitySource
    from ..executors import Executor
    from ._task import Running


class _HandoffMixin:
    """The runner's side of the capacity hand-off: where a task may be queued behind
    another, and the dispatcher's capacity waits that a place there interrupts."""

    if TYPE_CHECKING:  # what this room uses of the runner
        _running: dict[int, Running]
        _resumes: deque[Running]
        _executor: Executor | None
        _follows: bool
        _tails: dict[int, Running]
        _follow_lot: ParkingLot
        _follow_parked: bool
        _tree_queued: dict[Any, None]
        _follow_slots: CapacitySource | None

    def task_placed(self, task_id: int) -> None:
        """The task reached its worker: a dispatcher waiting for capacity may queue a
        task behind it now (the capacity hand-off)."""
        if self._follow_parked and not self._others_wait():
            self._follow_parked = False
            self._follow_lot.unpark_all()

    def _follow(self, cost: Any) -> Running | None:
        """The task a task of ``cost`` may be queued behind now, holding nothing, or
        ``None``: the first (oldest) chain end of the same cost the executor has room
        behind, unless someone else waits for capacity."""
        if not self._tails or self._resumes:
            return None
        slots = self._follow_slots
        if (self._tree_queued or (slots is not None and slots._waiters)) and self._others_wait():
            return None
        executor = self._executor
        assert executor is not None
        room = executor.successor_room
        for record in self._tails.values():
            if record.cost == cost and room(record.handle):  # type: ignore[arg-type]
                return record
        return None

    def _others_wait(self) -> bool:
        """Whether an acquire other than the dispatcher's own waits in the capacity
        tree (any level under the root of the runner's capacity) or for the
        executor's slots: then no task is queued behind another, which would pass it."""
        queued = self._tree_queued
        waiting = sum(len(level._waiters) for level in queued) if queued else 0
        slots = self._follow_slots
        if slots is not None:
            waiting += len(slots._waiters)
        return waiting > (1 if self._follow_parked else 0)

    async def _acquire_or_wake(self, level: CapacitySource) -> bool:
        """Take a unit of ``level`` (waiting in its FIFO); true once taken. While the
        runner could queue a task behind one of its own instead, a task end of the
        runner interrupts the wait: false, nothing taken."""
        if not (self._follows and self._running):
            await level.acquire()
            return True
        self._follow_parked = True
        try:
            return await level._acquire_on(self._follow_lot) is not None
        finally:
            self._follow_parked = False
